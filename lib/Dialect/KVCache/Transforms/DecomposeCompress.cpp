//===- DecomposeCompress.cpp - compress -> slot map + merge ---------------===//
//
// Lowers the policy-level `kvcache.compress` into the step-level ops of the
// spec: a slot map (`merge_sets` after `similarity` for KVMerger,
// `select_sets` for the eviction baselines) and one `kvcache.merge`.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHEDECOMPOSECOMPRESS
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

/// An empty destination of `type`, with dynamic sizes taken from `like`'s
/// dims of the same index.
Value emptyLike(OpBuilder &b, Location loc, Type type, Value like) {
  auto rt = cast<RankedTensorType>(type);
  SmallVector<Value> dynamic;
  for (int64_t i = 0, e = rt.getRank(); i < e; ++i)
    if (rt.isDynamicDim(i))
      dynamic.push_back(tensor::DimOp::create(b, loc, like, i));
  return tensor::EmptyOp::create(b, loc, rt.getShape(), rt.getElementType(),
                                 dynamic);
}

struct DecomposeCompress : OpRewritePattern<CompressOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CompressOp op,
                                PatternRewriter &rewriter) const override {
    PolicyAttr policy = op.getPolicy();
    if (policy.getKind() == PolicyKind::full)
      return rewriter.notifyMatchFailure(op, "full policy folds instead");
    int64_t l = cast<RankedTensorType>(op.getKeys().getType()).getDimSize(1);
    std::optional<int64_t> budget = policy.getStaticBudget();
    if (!budget) {
      if (ShapedType::isDynamic(l))
        return rewriter.notifyMatchFailure(op, "ratio budget, dynamic length");
      budget = policy.getBudget(l);
    }
    int64_t sink = policy.getSink();
    int64_t recent = policy.getRecentFor(*budget);
    int64_t middle = *budget - sink - recent;
    // Static caches within budget are the canonicalizer's job; dynamic ones
    // are handled at run time by the slot-map ops (identity map).
    if (!ShapedType::isDynamic(l) && l <= *budget)
      return rewriter.notifyMatchFailure(op, "within budget: folds instead");

    Location loc = op.getLoc();
    auto i32 = rewriter.getI32Type();
    int64_t h = cast<RankedTensorType>(op.getKeys().getType()).getDimSize(0);
    auto slotsType = RankedTensorType::get({h, l}, i32);
    auto lengthsType = RankedTensorType::get({h}, i32);

    Value slots, lengths;
    if (policy.getKind() == PolicyKind::kvmerger) {
      int64_t links = ShapedType::isDynamic(l) ? l : l - 1;
      Value sim = SimilarityOp::create(
          rewriter, loc, RankedTensorType::get({h, links}, rewriter.getF32Type()),
          op.getKeys());
      int64_t heavy = policy.getHeavyFor(*budget);
      auto sets = MergeSetsOp::create(
          rewriter, loc, slotsType, lengthsType, sim,
          heavy > 0 ? op.getScores() : Value(), sink, recent, middle, heavy,
          policy.getMode(), policy.getEps());
      slots = sets.getSlots();
      lengths = sets.getLengths();
    } else {
      // streaming is h2o without a middle: recent = B - sink.
      auto sets = SelectSetsOp::create(rewriter, loc, slotsType, lengthsType,
                                       op.getScores(), sink, recent,
                                       policy.getKind() == PolicyKind::h2o
                                           ? middle
                                           : 0);
      slots = sets.getSlots();
      lengths = sets.getLengths();
    }

    auto merge = MergeOp::create(
        rewriter, loc,
        TypeRange{op.getCompressedKeys().getType(),
                  op.getCompressedValues().getType(),
                  op.getPositions().getType(), op.getCounts().getType(),
                  op.getCompressedScores().getType()},
        op.getKeys(), op.getValues(), op.getScores(), slots,
        lengths,
        emptyLike(rewriter, loc, op.getCompressedKeys().getType(), op.getKeys()),
        emptyLike(rewriter, loc, op.getCompressedValues().getType(),
                  op.getValues()),
        emptyLike(rewriter, loc, op.getPositions().getType(), op.getScores()),
        emptyLike(rewriter, loc, op.getCounts().getType(), op.getScores()),
        emptyLike(rewriter, loc, op.getCompressedScores().getType(),
                  op.getScores()),
        // `auto` is merge's default: leave the attribute out.
        // Eviction slot maps are singletons: no kernel width.
        policy.getKind() != PolicyKind::kvmerger ||
                policy.getSigma().getKind() == SigmaKind::automatic
            ? SigmaAttr()
            : policy.getSigma());
    rewriter.replaceOp(op, {merge.getMergedKeys(), merge.getMergedValues(),
                            merge.getPositions(), merge.getCounts(),
                            merge.getMergedScores(), lengths});
    return success();
  }
};

struct KVCacheDecomposeCompressPass
    : kvmerge::kvcache::impl::KVCacheDecomposeCompressBase<
          KVCacheDecomposeCompressPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<DecomposeCompress>(ctx);
    CompressOp::getCanonicalizationPatterns(patterns, ctx);
    // Ops the patterns reject with an error (dynamic ratio budgets) remain.
    bool failedOp = false;
    getOperation()->walk([&](CompressOp op) {
      if (!op.getPolicy().getStaticBudget() &&
          op.getPolicy().getKind() != PolicyKind::full &&
          ShapedType::isDynamic(
              cast<RankedTensorType>(op.getKeys().getType()).getDimSize(1))) {
        op.emitOpError() << "a 'ratio' budget needs a static cache length; "
                            "give the budget in 'slots' for dynamic caches";
        failedOp = true;
      }
    });
    if (failedOp)
      return signalPassFailure();
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
