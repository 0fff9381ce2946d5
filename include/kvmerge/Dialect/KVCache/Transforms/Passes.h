//===- Passes.h - kvcache transformation passes -----------------*- C++ -*-===//

#ifndef KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_H
#define KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_H

#include "kvmerge/Dialect/KVCache/IR/KVCache.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Pass/Pass.h"

namespace kvmerge::kvcache {

#define GEN_PASS_DECL
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"

} // namespace kvmerge::kvcache

#endif // KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_H
