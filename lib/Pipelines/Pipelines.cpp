//===- Pipelines.cpp - kvmerge named pass pipelines -----------------------===//

#include "kvmerge/Pipelines/Pipelines.h"

#include "kvmerge/Conversion/Passes.h"
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"
#include "kvmerge/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace {
/// Marks every public function for a C-compatible wrapper
/// (`_mlir_ciface_<name>`), which kvmerge-run and the Python package call.
struct EmitCInterfacePass
    : public PassWrapper<EmitCInterfacePass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(EmitCInterfacePass)
  StringRef getArgument() const final { return "kvmerge-emit-c-interface"; }
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (func.isPublic() && !func.isExternal())
        func->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                      UnitAttr::get(&getContext()));
  }
};
/// Decomposes aggregate linalg ops (linalg.softmax) into generics that the
/// rest of the CPU pipeline lowers.
struct DecomposeAggregatesPass
    : public PassWrapper<DecomposeAggregatesPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(DecomposeAggregatesPass)
  StringRef getArgument() const final { return "kvmerge-decompose-aggregates"; }
  void runOnOperation() override {
    SmallVector<linalg::AggregatedOpInterface> ops;
    getOperation()->walk(
        [&](linalg::AggregatedOpInterface op) { ops.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (linalg::AggregatedOpInterface op : ops) {
      rewriter.setInsertionPoint(op);
      FailureOr<SmallVector<Value>> parts = op.decomposeOperation(rewriter);
      if (failed(parts)) {
        op->emitOpError("cannot be decomposed for the CPU pipeline");
        return signalPassFailure();
      }
      rewriter.replaceOp(op, *parts);
    }
  }
};
/// After buffer-results-to-out-params, a call to a function with out-params
/// writes into a fresh buffer that the caller then copies into its own
/// out-param: `%a = alloc; call @f(..., %a); memref.copy %a, %out`. When the
/// fresh buffer has no other use and the out-param no other writer, the call
/// writes into the out-param directly (no copy, no allocation).
struct ElideOutParamCopiesPass
    : public PassWrapper<ElideOutParamCopiesPass, OperationPass<func::FuncOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ElideOutParamCopiesPass)
  StringRef getArgument() const final {
    return "kvmerge-elide-out-param-copies";
  }
  void runOnOperation() override {
    SmallVector<memref::CopyOp> copies;
    getOperation().walk([&](memref::CopyOp copy) { copies.push_back(copy); });
    for (memref::CopyOp copy : copies) {
      auto alloc = copy.getSource().getDefiningOp<memref::AllocOp>();
      auto out = dyn_cast<BlockArgument>(copy.getTarget());
      if (!alloc || !out || alloc.getType() != out.getType() ||
          out.getOwner() != &getOperation().getBody().front() ||
          !out.hasOneUse() || alloc->getBlock() != copy->getBlock())
        continue;
      func::CallOp call;
      bool onlyCallAndCopy = llvm::all_of(alloc->getUsers(), [&](Operation *u) {
        if (u == copy)
          return true;
        auto c = dyn_cast<func::CallOp>(u);
        if (!c || call || c->getBlock() != copy->getBlock() ||
            !c->isBeforeInBlock(copy))
          return false;
        call = c;
        return true;
      });
      if (!onlyCallAndCopy || !call)
        continue;
      alloc.getResult().replaceAllUsesWith(out);
      copy.erase();
      alloc.erase();
    }
  }
};
/// A function that returns one tensor twice (a frontend returning the same
/// cache view for two layers, CSE'd constants) would hand one buffer to two
/// out-params, which buffer-results-to-out-params cannot do: every repeated
/// result becomes its own copy.
struct DistinctResultsPass
    : public PassWrapper<DistinctResultsPass, OperationPass<func::FuncOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(DistinctResultsPass)
  StringRef getArgument() const final { return "kvmerge-distinct-results"; }
  StringRef getDescription() const final {
    return "Copy function results that repeat an earlier result";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<bufferization::BufferizationDialect>();
  }
  void runOnOperation() override {
    getOperation().walk([](func::ReturnOp ret) {
      llvm::SmallDenseSet<Value> seen;
      OpBuilder b(ret);
      for (OpOperand &operand : ret->getOpOperands()) {
        Value v = operand.get();
        auto type = dyn_cast<RankedTensorType>(v.getType());
        if (!type || seen.insert(v).second)
          continue;
        operand.set(bufferization::AllocTensorOp::create(
            b, ret.getLoc(), type, ValueRange{}, /*copy=*/v));
      }
    });
  }
};
} // namespace

void kvmerge::buildLowerToLLVMPipeline(OpPassManager &pm,
                                       const LowerToLLVMOptions &options) {
  // Upstream tensor programs: elementwise arith/math on tensors -> linalg,
  // aggregate ops (linalg.softmax) -> generics.
  pm.addNestedPass<func::FuncOp>(createConvertElementwiseToLinalgPass());
  pm.addPass(std::make_unique<DecomposeAggregatesPass>());
  // Named ops become generics first, so that fusion sees through them: a
  // frontend's `linalg.transpose` of a weight folds into the indexing map of
  // the matmul that reads it (no transposed copy of every weight per call),
  // and chains of named elementwise ops fuse like generic ones.
  pm.addPass(createLinalgGeneralizeNamedOpsPass());
  // Elementwise chains (a frontend's RMSNorm, RoPE, SiLU, the leftovers of
  // raised attention) become one loop nest each: less memory traffic, and
  // much less IR for the rest of the pipeline. Never fused into a consumer
  // that would recompute them (an RMSNorm into the next matmul). Runs after
  // raising, which needs the Q/K/V tensors fusion would fold away.
  pm.addPass(createKVMergeFuseElementwise());
  // Matmuls and norms summed in vector lanes with FMAs (not kvcache ops:
  // their own loops below keep their orders).
  if (options.reassociateReductions)
    pm.addPass(createKVMergeReassociateReductions());

  // kvcache on tensors -> loops on buffers, each distinct op once (after
  // folding the compressions that are identities).
  pm.addPass(createCanonicalizerPass());
  pm.addPass(kvcache::createKVCacheOutline());
  pm.addPass(kvcache::createKVCacheDecomposeCompress());
  if (options.fuseMerge)
    pm.addPass(kvcache::createKVCacheFuseMerge());
  pm.addPass(createConvertKVCacheToLoops());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  // Bufferize; results become caller-allocated out-params so callers own
  // every output buffer.
  addBufferizeToOutParams(pm);
  bufferization::buildBufferDeallocationPipeline(pm);
  pm.addPass(createCanonicalizerPass());

  // Loops -> LLVM. With the runtime, linalg's parallel dimensions become
  // scf.parallel and every outermost one a task function: the matmuls and
  // elementwise nests of a model use every core, and a whole model is many
  // small functions for LLVM instead of one huge one (whose register
  // allocation is superlinear: 30 Llama layers took minutes).
  if (options.parallelRuntime) {
    pm.addNestedPass<func::FuncOp>(createConvertLinalgToParallelLoopsPass());
    pm.addPass(createKVMergeOutlineParallelLoops());
  } else {
    pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  }
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // The similarity's vector lanes (convert-kvcache-to-loops).
  pm.addPass(createConvertVectorToLLVMPass());
  if (options.emitCInterface)
    pm.addPass(std::make_unique<EmitCInterfacePass>());
  // f32 exp inline (vectorizable, no slow library underflow path) rather
  // than a call of expf per element.
  pm.addPass(createKVMergeApproximateMath());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  FinalizeMemRefToLLVMConversionPassOptions memrefOptions;
  memrefOptions.useGenericFunctions = options.runtimeAllocator;
  pm.addPass(createFinalizeMemRefToLLVMConversionPass(memrefOptions));
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  if (options.parallelRuntime)
    pm.addPass(createKVMergeLowerParallelLaunches());
}

void kvmerge::addBufferizeToOutParams(OpPassManager &pm) {
  pm.addNestedPass<func::FuncOp>(std::make_unique<DistinctResultsPass>());
  bufferization::OneShotBufferizePassOptions bufferizeOptions;
  bufferizeOptions.bufferizeFunctionBoundaries = true;
  bufferizeOptions.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferizeOptions));
  bufferization::BufferResultsToOutParamsPassOptions outParams;
  outParams.hoistStaticAllocs = true;
  outParams.modifyPublicFunctions = true;
  pm.addPass(bufferization::createBufferResultsToOutParamsPass(outParams));
  pm.addNestedPass<func::FuncOp>(std::make_unique<ElideOutParamCopiesPass>());
}

std::unique_ptr<Pass> kvmerge::createEmitCInterfacePass() {
  return std::make_unique<EmitCInterfacePass>();
}

std::unique_ptr<Pass> kvmerge::createDecomposeAggregatesPass() {
  return std::make_unique<DecomposeAggregatesPass>();
}

void kvmerge::buildExportUpstreamPipeline(OpPassManager &pm) {
  pm.addPass(kvcache::createKVCacheDecomposeCompress());
  pm.addPass(createConvertKVCacheToLinalg());
  pm.addPass(createCanonicalizerPass());
  // Folded compressions (e.g. policy full) leave tensor.generate, which
  // iree-compile does not take.
  pm.addPass(createKVMergeGenerateToLinalg());
  pm.addPass(createCSEPass());
}

void kvmerge::registerPipelines() {
  PassRegistration<DistinctResultsPass>();
  PassPipelineRegistration<>(
      "kvmerge-export-upstream",
      "Lower kvcache ops to linalg/tensor/arith/math/scf on tensors (no "
      "buffers) for other MLIR compilers such as iree-compile",
      buildExportUpstreamPipeline);
  registerGPUPipelines();
  PassPipelineRegistration<LowerToLLVMOptions>(
      "kvmerge-lower-to-llvm",
      "Lower kvcache and upstream tensor IR to the LLVM dialect for CPU "
      "execution (bufferized; function results become out-params)",
      buildLowerToLLVMPipeline);
}
