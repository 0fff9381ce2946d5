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

/// The ops the rewriter created in the current round.
struct CreatedOps : RewriterBase::Listener {
  llvm::DenseSet<Operation *> ops;
  void notifyOperationInserted(Operation *op,
                               OpBuilder::InsertPoint) override {
    ops.insert(op);
  }
  void notifyOperationErased(Operation *op) override { ops.erase(op); }
};

struct FuseElementwisePass
    : public kvmerge::impl::KVMergeFuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    // Fusion clones both bodies into a new op, so fusing a chain of n ops
    // one link at a time (what a greedy driver does, top-down: the growing
    // fused op is the producer of the next fusion) clones 1 + 2 + ... + n
    // ops: quadratic (4000 chained adds: 15 s). In rounds, an op made in
    // this round is not fused *as a producer* until the next round, so a
    // chain fuses in disjoint pairs and halves every round: O(n log n)
    // clones. It may still grow as a consumer within the round, so a DAG
    // that can only be fused from its end (each value used by the next two
    // ops) still fuses in one round, as before.
    CreatedOps created;
    auto fuses = [&](OpOperand *operand) {
      if (created.ops.contains(operand->get().getDefiningOp()))
        return false;
      return fusesWithoutRecompute(operand);
    };
    RewritePatternSet patterns(context);
    linalg::populateElementwiseOpsFusionPatterns(patterns, fuses);
    linalg::populateFoldReshapeOpsByExpansionPatterns(patterns, singleUseProducer);
    tensor::populateBubbleUpExpandShapePatterns(patterns);
    linalg::populateConstantFoldLinalgOperations(patterns, singleUseProducer);
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, context);
    linalg::GenericOp::getCanonicalizationPatterns(patterns, context);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, context);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, context);
    context->getLoadedDialect<linalg::LinalgDialect>()->getCanonicalizationPatterns(patterns);
    FrozenRewritePatternSet frozen(std::move(patterns));
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    config.setListener(&created);
    bool changed = true;
    while (changed) {
      created.ops.clear();
      if (failed(applyPatternsGreedily(getOperation(), frozen, config,
                                       &changed))) {
        signalPassFailure();
        return;
      }
    }
  }
};

} // namespace
