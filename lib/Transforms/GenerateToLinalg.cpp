//===- GenerateToLinalg.cpp - tensor.generate -> linalg.generic -----------===//
//
// kvmerge-generate-to-linalg (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Transforms/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGEGENERATETOLINALG
#include "kvmerge/Transforms/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

struct GenerateToGeneric : OpRewritePattern<tensor::GenerateOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::GenerateOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<RankedTensorType>(op.getType());
    Value empty = tensor::EmptyOp::create(rewriter, loc, type, op.getDynamicExtents());
    int64_t rank = type.getRank();
    SmallVector<AffineMap> maps{rewriter.getMultiDimIdentityMap(rank)};
    SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
    Block &body = op.getBody().front();
    auto generic = linalg::GenericOp::create(
        rewriter, loc, TypeRange{type}, ValueRange{}, ValueRange{empty}, maps,
        iterators, [&](OpBuilder &b, Location l, ValueRange) {
          IRMapping map;
          for (int64_t i = 0; i < rank; ++i)
            map.map(body.getArgument(i), linalg::IndexOp::create(b, l, i).getResult());
          for (Operation &nested : body.without_terminator())
            b.clone(nested, map);
          auto yield = cast<tensor::YieldOp>(body.getTerminator());
          linalg::YieldOp::create(b, l, map.lookupOrDefault(yield.getValue()));
        });
    rewriter.replaceOp(op, generic.getResults());
    return success();
  }
};

struct GenerateToLinalgPass
    : public kvmerge::impl::KVMergeGenerateToLinalgBase<GenerateToLinalgPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<GenerateToGeneric>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
