//===- FuseElementwise.cpp - elementwise fusion that never recomputes -----===//
//
// kvmerge-fuse-elementwise: upstream's elementwise fusion patterns with a
// control function that refuses fusions which would repeat a producer's
// computation (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGEFUSEELEMENTWISE
#include "kvmerge/Transforms/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

/// Whether `op`'s body only forwards block arguments (transpose, broadcast,
/// copy): fusing it anywhere costs nothing but an indexing map.
bool movesDataOnly(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  if (!body.without_terminator().empty())
    return false;
  return llvm::all_of(body.getTerminator()->getOperands(), [&](Value v) {
    return isa<BlockArgument>(v) && cast<BlockArgument>(v).getOwner() == &body;
  });
}

/// Fuse the producer of `operand` into its consumer only if it has one use
/// and the fused op computes each of its elements once.
bool fusesWithoutRecompute(OpOperand *operand) {
  auto producer = operand->get().getDefiningOp<linalg::GenericOp>();
  if (!producer || !producer->hasOneUse())
    return false;
  if (movesDataOnly(producer))
    return true;
  auto consumer = dyn_cast<linalg::LinalgOp>(operand->getOwner());
  if (!consumer)
    return false;
  return consumer.getMatchingIndexingMap(operand).isPermutation();
}

/// Reshape propagation and constant folding keep upstream's rule.
bool singleUseProducer(OpOperand *operand) {
  Operation *producer = operand->get().getDefiningOp();
  return producer && producer->hasOneUse();
}

struct FuseElementwisePass
    : public kvmerge::impl::KVMergeFuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    RewritePatternSet patterns(context);
    linalg::populateElementwiseOpsFusionPatterns(patterns, fusesWithoutRecompute);
    linalg::populateFoldReshapeOpsByExpansionPatterns(patterns, singleUseProducer);
    tensor::populateBubbleUpExpandShapePatterns(patterns);
    linalg::populateConstantFoldLinalgOperations(patterns, singleUseProducer);
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, context);
    linalg::GenericOp::getCanonicalizationPatterns(patterns, context);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, context);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, context);
    context->getLoadedDialect<linalg::LinalgDialect>()->getCanonicalizationPatterns(patterns);
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};

} // namespace
