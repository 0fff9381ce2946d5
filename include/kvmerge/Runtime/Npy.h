//===- Npy.h - NumPy .npy reader and writer ---------------------*- C++ -*-===//
//
// Format versions 1.0, 2.0 and 3.0; C order only; little-endian dtypes
// '<f2' '<f4' '<f8' '|i1' '<i4' '<i8', and bfloat16 as ml_dtypes saves it
// (descr '<V2' or '|V2', raw 2-byte void). A void descr says nothing about
// what the bytes are, so it is read as bf16 only when the caller expects
// bf16. Writing bf16 produces '<V2', which
// `np.load(f).view(ml_dtypes.bfloat16)` reads back.
//
// Every malformed input (bad magic, truncated header or data, oversized
// header length, shape products that overflow, data size mismatch,
// fortran_order=True, unsupported dtype) is an llvm::Error, never a crash or
// an out-of-bounds read.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_NPY_H
#define KVMERGE_RUNTIME_NPY_H

#include "kvmerge/Runtime/HostTensor.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>

namespace kvmerge::runtime {

/// Parses an in-memory .npy file. `expectedType`, when given, is the element
/// type the consumer wants; it is only used to resolve the ambiguous void
/// descr ('<V2' -> bf16) and is not otherwise enforced. `name` labels errors.
llvm::Expected<HostTensor>
parseNpy(llvm::ArrayRef<uint8_t> buffer, llvm::StringRef name = "<buffer>",
         std::optional<ElementType> expectedType = std::nullopt);

/// Reads and parses a .npy file ("-" reads stdin).
llvm::Expected<HostTensor>
readNpyFile(llvm::StringRef path,
            std::optional<ElementType> expectedType = std::nullopt);

/// Writes `tensor` in .npy format (version 1.0, or 2.0 for huge headers).
void writeNpy(llvm::raw_ostream &os, ConstTensorView tensor);

/// Writes `tensor` to `path` atomically: a temporary file in the same
/// directory is renamed over `path` only after it was fully written.
llvm::Error writeNpyFile(llvm::StringRef path, ConstTensorView tensor);

/// Writes `tensor` to a new temporary file next to `path`
/// (`<path>.tmp-XXXXXX`) and returns it unpublished: the caller renames it
/// over `path` with `keep(path)` or removes it with `discard()`. On error no
/// temporary is left behind.
llvm::Expected<llvm::sys::fs::TempFile>
writeNpyTemporary(llvm::StringRef path, ConstTensorView tensor);

/// The numpy descr written for `type` ('<f4', '<V2' for bf16, ...).
llvm::StringRef getNpyDescr(ElementType type);

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_NPY_H
