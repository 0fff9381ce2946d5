//===- Pipelines.h - kvmerge named pass pipelines ---------------*- C++ -*-===//
//
// Named pipelines that take kvcache (and upstream tensor) IR to executable
// code. Registered in kvmerge-opt as `--kvmerge-lower-to-llvm`; used by
// kvmerge-run and the Python bindings.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_PIPELINES_PIPELINES_H
#define KVMERGE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace kvmerge {

struct LowerToLLVMOptions
    : public mlir::PassPipelineOptions<LowerToLLVMOptions> {
  PassOptions::Option<bool> emitCInterface{
      *this, "emit-c-interface",
      llvm::cl::desc("Add llvm.emit_c_interface to public functions so that "
                     "a JIT or C caller can call them with memref "
                     "descriptors"),
      llvm::cl::init(true)};
};

/// kvcache + tensor/linalg/arith/math/scf on tensors -> LLVM dialect:
/// decompose compress, lower kvcache ops to loops, bufferize (function
/// results become caller-allocated out-params), free temporaries, and
/// convert to LLVM.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm,
                              const LowerToLLVMOptions &options);

/// Registers every named pipeline with the global pipeline registry.
void registerPipelines();

} // namespace kvmerge

#endif // KVMERGE_PIPELINES_PIPELINES_H
