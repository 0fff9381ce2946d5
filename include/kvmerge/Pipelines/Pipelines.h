//===- Pipelines.h - kvmerge named pass pipelines ---------------*- C++ -*-===//
//
// Named pipelines that take kvcache (and upstream tensor) IR to executable
// code. Registered in kvmerge-opt as `--kvmerge-lower-to-llvm`; used by
// kvmerge-run and the Python bindings.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_PIPELINES_PIPELINES_H
#define KVMERGE_PIPELINES_PIPELINES_H

#include "mlir/Pass/Pass.h"
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
  PassOptions::Option<bool> reassociateReductions{
      *this, "reassociate-reductions",
      llvm::cl::desc("Let the float reductions of linalg.generic ops (a "
                     "model's matmuls and norms) be reassociated and "
                     "contracted, so LLVM vectorizes them "
                     "(kvmerge-reassociate-reductions); false keeps the "
                     "source order"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseMerge{
      *this, "fuse-merge",
      llvm::cl::desc("Fuse similarity, merge sets and merge into one region "
                     "per KV head (kvmerge-fuse-merge); false keeps the "
                     "unfused ops as the reference path"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> parallelRuntime{
      *this, "parallel-runtime",
      llvm::cl::desc("Run every outermost scf.parallel on the runtime's "
                     "thread pool (kvmerge-outline-parallel-loops, "
                     "kvmerge-lower-parallel-launches): the code calls "
                     "kvmerge_parallel_for, which kvmerge-run and the Python "
                     "package provide; false keeps the loops sequential"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> runtimeAllocator{
      *this, "runtime-allocator",
      llvm::cl::desc("Allocate and free buffers through MLIR's generic "
                     "functions (_mlir_memref_to_llvm_alloc/_free), which "
                     "kvmerge-run and the Python package bind to the "
                     "runtime's caching allocator (include/kvmerge/Runtime/"
                     "Allocator.h); false calls malloc/free"),
      llvm::cl::init(false)};
};

/// kvcache + tensor/linalg/arith/math/scf on tensors -> LLVM dialect:
/// decompose compress, lower kvcache ops to loops, bufferize (function
/// results become caller-allocated out-params), free temporaries, and
/// convert to LLVM.
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm,
                              const LowerToLLVMOptions &options);

/// kvcache (and upstream) IR -> upstream dialects only, still on tensors:
/// decompose compress, convert-kvcache-to-linalg, canonicalize. For
/// iree-compile and other linalg-on-tensors consumers (docs/iree.md).
void buildExportUpstreamPipeline(mlir::OpPassManager &pm);

/// Registers every named pipeline with the global pipeline registry.
void registerPipelines();

//===----------------------------------------------------------------------===//
// GPU (NVIDIA) pipeline: lib/Pipelines/GPUPipelines.cpp, docs/gpu.md.
//===----------------------------------------------------------------------===//

struct LowerToNVVMOptions
    : public mlir::PassPipelineOptions<LowerToNVVMOptions> {
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("NVIDIA target chip (sm_80, sm_90a, ...)"),
      llvm::cl::init("sm_90a")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("NVPTX target features (PTX ISA version, e.g. +ptx80; "
                     "sm_90 needs at least +ptx78)"),
      llvm::cl::init("+ptx80")};
  PassOptions::Option<int> optLevel{
      *this, "opt-level",
      llvm::cl::desc("Optimization level of the device code (0-3)"),
      llvm::cl::init(3)};
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("gpu-module-to-binary format: isa (PTX text, loaded by "
                     "the driver's JIT), bin (cubin, needs ptxas at compile "
                     "time) or fatbin (needs ptxas and fatbinary)"),
      llvm::cl::init("isa")};
  PassOptions::Option<std::string> dumpPTX{
      *this, "dump-ptx",
      llvm::cl::desc("Directory to write every GPU binary's objects to "
                     "(<binary>.<chip>.ptx for format=isa)"),
      llvm::cl::init("")};
  PassOptions::Option<bool> emitCInterface{
      *this, "emit-c-interface",
      llvm::cl::desc("Add llvm.emit_c_interface to public functions"),
      llvm::cl::init(true)};
  PassOptions::Option<std::string> cudaPath{
      *this, "cuda-path",
      llvm::cl::desc("CUDA toolkit whose nvvm/libdevice is linked into the "
                     "kernels (math functions); default: $CUDA_HOME, "
                     "$CUDA_PATH, /usr/local/cuda, /usr/lib/cuda"),
      llvm::cl::init("")};
};

/// kvcache + tensor IR -> host LLVM dialect with embedded GPU binaries:
/// decompose compress, kvcache ops -> gpu.launch kernels (unmapped ops ->
/// host loops), bufferize as the CPU pipeline does, stage device copies,
/// outline, NVVM, serialize with gpu-module-to-binary, lower the host.
void buildLowerToNVVMPipeline(mlir::OpPassManager &pm,
                              const LowerToNVVMOptions &options);

/// The bufferization step both pipelines share: one-shot bufferization
/// across function boundaries (identity layouts), then function results
/// become caller-allocated out-params (static allocations hoisted, public
/// functions included).
void addBufferizeToOutParams(mlir::OpPassManager &pm);
/// The CPU pipeline's helper passes, shared with the GPU pipeline.
std::unique_ptr<mlir::Pass> createEmitCInterfacePass();
std::unique_ptr<mlir::Pass> createDecomposeAggregatesPass();
/// Writes the objects of every gpu.binary to files in `dir`.
std::unique_ptr<mlir::Pass> createDumpGPUBinariesPass(std::string dir);

/// Registers --kvmerge-lower-to-nvvm and kvmerge-dump-gpu-binaries (called
/// by registerPipelines).
void registerGPUPipelines();

} // namespace kvmerge

#endif // KVMERGE_PIPELINES_PIPELINES_H
