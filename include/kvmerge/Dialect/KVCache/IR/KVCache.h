//===- KVCache.h - kvcache dialect ------------------------------*- C++ -*-===//
//
// Declares the kvcache dialect, its enums, attributes and operations.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_DIALECT_KVCACHE_IR_KVCACHE_H
#define KVMERGE_DIALECT_KVCACHE_IR_KVCACHE_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "llvm/Support/Format.h"

#include <optional>
#include <string>

#include "kvmerge/Dialect/KVCache/IR/KVCacheOpsDialect.h.inc"

#include "kvmerge/Dialect/KVCache/IR/KVCacheEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "kvmerge/Dialect/KVCache/IR/KVCacheAttrs.h.inc"

namespace kvmerge::kvcache {
/// Formats a number for a diagnostic the way users write it (`0.25`, `-1`).
inline std::string formatNumber(double value) {
  std::string s;
  llvm::raw_string_ostream(s) << llvm::format("%g", value);
  return s;
}
} // namespace kvmerge::kvcache

#define GET_OP_CLASSES
#include "kvmerge/Dialect/KVCache/IR/KVCacheOps.h.inc"

#endif // KVMERGE_DIALECT_KVCACHE_IR_KVCACHE_H
