//===- KVMerge.cpp - C API of kvmerge -------------------------------------===//

#include "kvmerge-c/KVMerge.h"

#include "kvmerge/InitAllKVMerge.h"

#include "mlir/CAPI/IR.h"
#include "mlir/CAPI/Pass.h"
#include "mlir/CAPI/Registration.h"
#include "mlir/CAPI/Support.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <mutex>

MLIR_DEFINE_CAPI_DIALECT_REGISTRATION(KVCache, kvcache,
                                      kvmerge::kvcache::KVCacheDialect)

void kvmergeRegisterAllDialects(MlirDialectRegistry registry) {
  kvmerge::registerAllDialects(*unwrap(registry));
}

void kvmergeRegisterAllPasses(void) {
  // Pipelines may be registered only once per process.
  static std::once_flag once;
  std::call_once(once, [] { kvmerge::registerAllPasses(); });
}

void kvmergeBuildLowerToLLVMPipeline(MlirOpPassManager pm,
                                     bool emitCInterface) {
  kvmerge::LowerToLLVMOptions options;
  options.emitCInterface = emitCInterface;
  kvmerge::buildLowerToLLVMPipeline(*unwrap(pm), options);
}

MlirLogicalResult kvmergeLowerToLLVM(MlirModule module, bool emitCInterface) {
  mlir::ModuleOp op = unwrap(module);
  mlir::PassManager pm(op.getContext(), mlir::ModuleOp::getOperationName());
  kvmerge::LowerToLLVMOptions options;
  options.emitCInterface = emitCInterface;
  kvmerge::buildLowerToLLVMPipeline(pm, options);
  return wrap(pm.run(op));
}
