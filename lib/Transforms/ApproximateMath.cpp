//===- ApproximateMath.cpp - f32 math.exp -> polynomial approximation -----===//
//
// kvmerge-approximate-math (see Passes.td): upstream's polynomial
// approximation of exp, and nothing else.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Transforms/Passes.h"

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kvmerge {
#define GEN_PASS_DEF_KVMERGEAPPROXIMATEMATH
#include "kvmerge/Transforms/Passes.h.inc"
} // namespace kvmerge

using namespace mlir;

namespace {

struct ApproximateMathPass
    : kvmerge::impl::KVMergeApproximateMathBase<ApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(
        patterns, [](StringRef name) { return name == "math.exp"; });
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
