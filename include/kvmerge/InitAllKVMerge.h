//===- InitAllKVMerge.h - register every kvmerge dialect and pass -*- C++ -*-===//
//
// One place that tools (kvmerge-opt, the mlir-opt plugin, the C API) call to
// make all of kvmerge available.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_INITALLKVMERGE_H
#define KVMERGE_INITALLKVMERGE_H

#include "kvmerge/AOT/Passes.h"
#include "kvmerge/Conversion/Passes.h"
#include "kvmerge/Dialect/KVCache/IR/KVCache.h"
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"
#include "kvmerge/Pipelines/Pipelines.h"
#include "kvmerge/Transforms/Passes.h"
#include "mlir/IR/DialectRegistry.h"

namespace kvmerge {

inline void registerAllDialects(mlir::DialectRegistry &registry) {
  registry.insert<kvcache::KVCacheDialect>();
}

inline void registerAllPasses() {
  kvcache::registerKVCachePasses();
  registerKVMergeConversionPasses();
  registerKVMergeTransformsPasses();
  registerPipelines();
  registerKVMergeAOTPasses();
}

} // namespace kvmerge

#endif // KVMERGE_INITALLKVMERGE_H
