//===- FuseMerge.cpp - similarity + merge_sets + merge -> fused_merge -----===//

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHEFUSEMERGE
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

struct FuseMergeChain : OpRewritePattern<MergeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MergeOp merge,
                                PatternRewriter &rewriter) const override {
    auto sets = merge.getSlots().getDefiningOp<MergeSetsOp>();
    if (!sets || merge.getLengths() != sets.getLengths())
      return rewriter.notifyMatchFailure(merge, "slots are not merge sets");
    auto sim = sets.getSimilarity().getDefiningOp<SimilarityOp>();
    if (!sim || sim.getKeys() != merge.getKeys())
      return rewriter.notifyMatchFailure(merge,
                                         "sets are not of these keys' links");
    if (sets.getScores() && sets.getScores() != merge.getScores())
      return rewriter.notifyMatchFailure(
          merge, "heavy hitters of other scores than the merge's");
    auto lengthsType = cast<RankedTensorType>(sets.getLengths().getType());
    // lengths is [Hkv]: a dynamic Hkv is the keys' dim 0.
    SmallVector<Value> dynamicSizes;
    if (lengthsType.isDynamicDim(0))
      dynamicSizes.push_back(
          tensor::DimOp::create(rewriter, merge.getLoc(), merge.getKeys(), 0));
    Value lengthsInit = tensor::EmptyOp::create(
        rewriter, merge.getLoc(), lengthsType.getShape(),
        lengthsType.getElementType(), dynamicSizes);
    auto fused = FusedMergeOp::create(
        rewriter, merge.getLoc(), merge.getKeys(), merge.getValues(),
        merge.getScores(), merge.getKeysInit(), merge.getValuesInit(),
        merge.getPositionsInit(), merge.getCountsInit(), merge.getScoresInit(),
        lengthsInit, sets.getSinkAttr(), sets.getRecentAttr(),
        sets.getMiddleAttr(), sets.getHeavyAttr(), sets.getModeAttr(),
        sets.getEpsAttr(),
        merge.getSigmaAttr());
    // Other users of the slot map's lengths read the fused op's.
    rewriter.replaceAllUsesWith(sets.getLengths(), fused.getLengths());
    rewriter.replaceOp(merge, fused.getResults().drop_back());
    return success();
  }
};

struct KVCacheFuseMergePass
    : kvmerge::kvcache::impl::KVCacheFuseMergeBase<KVCacheFuseMergePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseMergeChain>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
