//===- KVCacheDialect.cpp - kvcache dialect registration ------------------===//

#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace kvmerge::kvcache;

#include "kvmerge/Dialect/KVCache/IR/KVCacheOpsDialect.cpp.inc"

void KVCacheDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "kvmerge/Dialect/KVCache/IR/KVCacheOps.cpp.inc"
      >();
  registerAttributes();
}
