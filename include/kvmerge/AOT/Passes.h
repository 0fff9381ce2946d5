//===- Passes.h - ahead-of-time artifact passes -----------------*- C++ -*-===//

#ifndef KVMERGE_AOT_PASSES_H
#define KVMERGE_AOT_PASSES_H

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace kvmerge {

/// The module attribute that carries the recorded ABI between the passes.
inline constexpr llvm::StringLiteral kAOTABIAttrName = "kvmerge.aot.abi";

#define GEN_PASS_DECL
#include "kvmerge/AOT/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "kvmerge/AOT/Passes.h.inc"

} // namespace kvmerge

#endif // KVMERGE_AOT_PASSES_H
