//===- KVCacheOps.cpp - kvcache operations --------------------------------===//
//
// Verifiers and canonicalizations of the kvcache operations. Every verifier
// branch has a case in test/Dialect/KVCache/invalid.mlir.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/IR/KVCache.h"

#include "mlir/Dialect/Tensor/Utils/Utils.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"

#include <cmath>

using namespace mlir;
using namespace kvmerge::kvcache;

//===----------------------------------------------------------------------===//
// Custom directives
//===----------------------------------------------------------------------===//

/// `budget` | `threshold`, without the attribute's `#kvcache.mode<>` wrapper.
static ParseResult parseMergeMode(OpAsmParser &parser, MergeModeAttr &mode) {
  StringRef keyword;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseKeyword(&keyword))
    return failure();
  std::optional<MergeMode> parsed = symbolizeMergeMode(keyword);
  if (!parsed)
    return parser.emitError(loc, "unknown mode '")
           << keyword << "', expected 'budget' or 'threshold'";
  mode = MergeModeAttr::get(parser.getContext(), *parsed);
  return success();
}

static void printMergeMode(OpAsmPrinter &printer, Operation *,
                           MergeModeAttr mode) {
  printer << stringifyMergeMode(mode.getValue());
}

#define GET_OP_CLASSES
#include "kvmerge/Dialect/KVCache/IR/KVCacheOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Shape helpers
//===----------------------------------------------------------------------===//

namespace {
/// Checks ranked-tensor shapes against an expected shape where `kDynamic`
/// entries of either side match anything, and reports the first mismatch as
/// "<what> must have shape [...] (<names>), got [...]".
struct ShapeChecker {
  Operation *op;

  static bool dimsMatch(int64_t a, int64_t b) {
    return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
  }

  static std::string dimsToString(ArrayRef<int64_t> dims) {
    std::string s = "[";
    llvm::raw_string_ostream os(s);
    llvm::interleave(
        dims, os,
        [&](int64_t d) {
          if (ShapedType::isDynamic(d))
            os << "?";
          else
            os << d;
        },
        ", ");
    os << "]";
    return s;
  }

  LogicalResult check(Type type, StringRef what, StringRef names,
                      ArrayRef<int64_t> expected) const {
    auto shaped = cast<RankedTensorType>(type);
    if (shaped.getRank() != static_cast<int64_t>(expected.size()))
      return op->emitOpError()
             << what << " must have rank " << expected.size() << " "
             << names << ", got rank " << shaped.getRank();
    for (auto [got, want] : llvm::zip(shaped.getShape(), expected))
      if (!dimsMatch(got, want))
        return op->emitOpError()
               << what << " must have shape " << dimsToString(expected) << " "
               << names << ", got " << dimsToString(shaped.getShape());
    return success();
  }

  LogicalResult checkRank(Type type, StringRef what, StringRef names,
                          int64_t rank) const {
    SmallVector<int64_t> any(rank, ShapedType::kDynamic);
    return check(type, what, names, any);
  }
};

/// Dimension `i` of a ranked tensor value.
int64_t dim(Value v, unsigned i) {
  return cast<RankedTensorType>(v.getType()).getDimSize(i);
}
int64_t dim(Type t, unsigned i) {
  return cast<RankedTensorType>(t).getDimSize(i);
}

/// Verifies the (keys, values, scores) triple of one layer's cache and
/// returns {Hkv, L}.
FailureOr<std::pair<int64_t, int64_t>>
verifyCache(const ShapeChecker &c, Value keys, Value values, Value scores) {
  if (failed(c.checkRank(keys.getType(), "keys", "[Hkv, L, D]", 3)) ||
      failed(c.checkRank(values.getType(), "values", "[Hkv, L, Dv]", 3)))
    return failure();
  int64_t h = dim(keys, 0), l = dim(keys, 1);
  if (!ShapeChecker::dimsMatch(h, dim(values, 0)) ||
      !ShapeChecker::dimsMatch(l, dim(values, 1)))
    return c.op->emitOpError()
           << "keys and values must agree on KV heads and tokens, got keys "
           << ShapeChecker::dimsToString(
                  cast<RankedTensorType>(keys.getType()).getShape())
           << " and values "
           << ShapeChecker::dimsToString(
                  cast<RankedTensorType>(values.getType()).getShape());
  if (scores && failed(c.check(scores.getType(), "scores", "[Hkv, L]", {h, l})))
    return failure();
  return std::make_pair(h, l);
}

/// Verifies a slot map `[Hkv, L] i32` and its lengths `[Hkv] i32`.
LogicalResult verifySlotMap(const ShapeChecker &c, Type slots, Type lengths,
                            int64_t h, int64_t l) {
  if (failed(c.check(slots, "slot map", "[Hkv, L]", {h, l})) ||
      failed(c.check(lengths, "lengths", "[Hkv]", {h})))
    return failure();
  return success();
}

/// Verifies a compressed cache of capacity `b` (dynamic allowed).
LogicalResult verifyCompressed(const ShapeChecker &c, Value keys, Value values,
                               Type outKeys, Type outValues, Type positions,
                               Type counts, Type scores, int64_t h) {
  int64_t b = dim(outKeys, 1);
  if (failed(c.check(outKeys, "compressed keys", "[Hkv, B, D]",
                     {h, ShapedType::kDynamic, dim(keys, 2)})))
    return failure();
  b = ShapedType::isDynamic(b) ? dim(outValues, 1) : b;
  if (failed(c.check(outValues, "compressed values", "[Hkv, B, Dv]",
                     {h, b, dim(values, 2)})))
    return failure();
  if (failed(c.check(positions, "positions", "[Hkv, B]", {h, b})) ||
      failed(c.check(counts, "counts", "[Hkv, B]", {h, b})) ||
      failed(c.check(scores, "compressed scores", "[Hkv, B]", {h, b})))
    return failure();
  auto elt = [](Type t) { return cast<RankedTensorType>(t).getElementType(); };
  if (elt(outKeys) != elt(keys.getType()) ||
      elt(outValues) != elt(values.getType()))
    return c.op->emitOpError()
           << "compressed keys/values must keep the cache element types ("
           << elt(keys.getType()) << ", " << elt(values.getType())
           << "), got " << elt(outKeys) << ", " << elt(outValues);
  return success();
}

LogicalResult verifyEps(Operation *op, double eps) {
  if (!(eps >= -1.0 && eps <= 1.0))
    return op->emitOpError()
           << "'eps' is a cosine similarity and must be in [-1, 1], got "
           << formatNumber(eps);
  return success();
}

LogicalResult verifyScale(Operation *op, std::optional<double> scale) {
  if (scale && !(*scale > 0.0 && std::isfinite(*scale)))
    return op->emitOpError() << "'scale' must be a finite positive number, got "
                             << formatNumber(*scale);
  return success();
}

/// Hq must be a multiple of Hkv (GQA); reports otherwise.
LogicalResult verifyGroups(Operation *op, int64_t hq, int64_t hkv) {
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv) &&
      (hkv == 0 || hq % hkv != 0))
    return op->emitOpError() << "number of query heads (" << hq
                             << ") must be a multiple of the number of KV "
                                "heads ("
                             << hkv << ")";
  return success();
}

LogicalResult verifyHeadDim(Operation *op, int64_t dq, int64_t dk) {
  if (!ShapeChecker::dimsMatch(dq, dk))
    return op->emitOpError() << "head-dim mismatch between queries (" << dq
                             << ") and keys (" << dk << ")";
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// SimilarityOp
//===----------------------------------------------------------------------===//

LogicalResult SimilarityOp::verify() {
  ShapeChecker c{*this};
  if (failed(c.checkRank(getKeys().getType(), "keys", "[Hkv, L, D]", 3)))
    return failure();
  int64_t l = dim(getKeys(), 1);
  if (l == 0)
    return emitOpError() << "needs at least one token, got L = 0";
  int64_t links = ShapedType::isDynamic(l) ? l : l - 1;
  return c.check(getResult().getType(), "result", "[Hkv, L - 1]",
                 {dim(getKeys(), 0), links});
}

//===----------------------------------------------------------------------===//
// MergeSetsOp / SelectSetsOp
//===----------------------------------------------------------------------===//

/// Shared by merge_sets and select_sets: the slot map covers `l` tokens and
/// the kept regions fit into a static length.
/// Positions and lengths are i32: `sink`, `recent` and `middle` of the
/// slot-map ops are at most INT32_MAX, so their sums cannot overflow.
static LogicalResult verifyCounts(Operation *op, uint64_t sink,
                                  uint64_t recent, uint64_t middle) {
  for (auto [name, value] :
       {std::pair<StringRef, int64_t>{"sink", static_cast<int64_t>(sink)},
        {"recent", static_cast<int64_t>(recent)},
        {"middle", static_cast<int64_t>(middle)}})
    if (value < 0 || value > PolicyAttr::kMaxSlots)
      return op->emitOpError()
             << "'" << name << "' must be in [0, " << PolicyAttr::kMaxSlots
             << "] (positions and lengths are i32), got " << value;
  return success();
}

static LogicalResult verifySetsOp(Operation *op, Type slots, Type lengths,
                                  int64_t h, int64_t l, uint64_t sink,
                                  uint64_t recent, uint64_t middle) {
  ShapeChecker c{op};
  if (failed(verifySlotMap(c, slots, lengths, h, l)) ||
      failed(verifyCounts(op, sink, recent, middle)))
    return failure();
  if (!ShapedType::isDynamic(l) && static_cast<int64_t>(sink + recent) > l)
    return op->emitOpError() << "sink (" << sink << ") + recent (" << recent
                             << ") exceed the " << l << " tokens of the cache";
  return success();
}

/// `heavy` heavy hitters leave room for their segments' runs in `middle`.
static LogicalResult verifyHeavy(Operation *op, int64_t heavy,
                                 int64_t middle) {
  if (heavy < 0)
    return op->emitOpError() << "'heavy' must be non-negative, got " << heavy;
  if (2 * heavy + 1 > middle)
    return op->emitOpError() << "'heavy' (" << heavy
                             << ") needs 2 * heavy + 1 <= middle (" << middle
                             << ")";
  return success();
}

LogicalResult MergeSetsOp::verify() {
  ShapeChecker c{*this};
  if (failed(c.checkRank(getSimilarity().getType(), "similarity",
                         "[Hkv, L - 1]", 2)))
    return failure();
  if (static_cast<int64_t>(getMiddle()) < 1)
    return emitOpError() << "'middle' must be at least 1 slot, got "
                         << static_cast<int64_t>(getMiddle());
  if (failed(verifyEps(*this, getEps().convertToDouble())) ||
      failed(verifyHeavy(*this, getHeavy(), getMiddle())))
    return failure();
  int64_t links = dim(getSimilarity(), 1);
  int64_t l = ShapedType::isDynamic(links) ? links : links + 1;
  if (getHeavy() > 0 && !getScores())
    return emitOpError() << "'heavy' (" << getHeavy()
                         << ") needs the scores operand to find the heavy "
                            "hitters";
  if (getScores() &&
      failed(c.check(getScores().getType(), "scores", "[Hkv, L]",
                     {dim(getSimilarity(), 0), l})))
    return failure();
  return verifySetsOp(*this, getSlots().getType(), getLengths().getType(),
                      dim(getSimilarity(), 0), l, getSink(), getRecent(),
                      getMiddle());
}

LogicalResult SelectSetsOp::verify() {
  ShapeChecker c{*this};
  if (failed(c.checkRank(getScores().getType(), "scores", "[Hkv, L]", 2)))
    return failure();
  return verifySetsOp(*this, getSlots().getType(), getLengths().getType(),
                      dim(getScores(), 0), dim(getScores(), 1), getSink(),
                      getRecent(), getMiddle());
}

//===----------------------------------------------------------------------===//
// MergeOp
//===----------------------------------------------------------------------===//

LogicalResult MergeOp::verify() {
  ShapeChecker c{*this};
  FailureOr<std::pair<int64_t, int64_t>> hl =
      verifyCache(c, getKeys(), getValues(), getScores());
  if (failed(hl))
    return failure();
  auto [h, l] = *hl;
  if (failed(verifySlotMap(c, getSlots().getType(), getLengths().getType(), h,
                           l)))
    return failure();
  return verifyCompressed(c, getKeys(), getValues(), getKeysInit().getType(),
                          getValuesInit().getType(),
                          getPositionsInit().getType(),
                          getCountsInit().getType(), getScoresInit().getType(),
                          h);
}

//===----------------------------------------------------------------------===//
// FusedMergeOp
//===----------------------------------------------------------------------===//

LogicalResult FusedMergeOp::verify() {
  ShapeChecker c{*this};
  FailureOr<std::pair<int64_t, int64_t>> hl =
      verifyCache(c, getKeys(), getValues(), getScores());
  if (failed(hl))
    return failure();
  auto [h, l] = *hl;
  if (static_cast<int64_t>(getMiddle()) < 1)
    return emitOpError() << "'middle' must be at least 1 slot, got "
                         << static_cast<int64_t>(getMiddle());
  if (failed(verifyEps(*this, getEps().convertToDouble())) ||
      failed(verifyHeavy(*this, getHeavy(), getMiddle())) ||
      failed(c.check(getLengthsInit().getType(), "lengths", "[Hkv]", {h})) ||
      failed(verifyCounts(*this, getSink(), getRecent(), getMiddle())))
    return failure();
  if (!ShapedType::isDynamic(l) &&
      static_cast<int64_t>(getSink() + getRecent()) > l)
    return emitOpError() << "sink (" << getSink() << ") + recent ("
                         << getRecent() << ") exceed the " << l
                         << " tokens of the cache";
  return verifyCompressed(c, getKeys(), getValues(), getKeysInit().getType(),
                          getValuesInit().getType(),
                          getPositionsInit().getType(),
                          getCountsInit().getType(), getScoresInit().getType(),
                          h);
}

//===----------------------------------------------------------------------===//
// AccumulatedScoresOp
//===----------------------------------------------------------------------===//

LogicalResult AccumulatedScoresOp::verify() {
  ShapeChecker c{*this};
  if (failed(c.checkRank(getQueries().getType(), "queries", "[Hq, L, D]", 3)) ||
      failed(c.checkRank(getKeys().getType(), "keys", "[Hkv, L, D]", 3)))
    return failure();
  int64_t hq = dim(getQueries(), 0), hkv = dim(getKeys(), 0);
  int64_t l = dim(getKeys(), 1);
  if (failed(verifyGroups(*this, hq, hkv)) ||
      failed(verifyHeadDim(*this, dim(getQueries(), 2), dim(getKeys(), 2))))
    return failure();
  if (!ShapeChecker::dimsMatch(dim(getQueries(), 1), l))
    return emitOpError() << "queries and keys must cover the same tokens, got "
                         << dim(getQueries(), 1) << " and " << l;
  if (getWindow() && !ShapedType::isDynamic(l) && static_cast<int64_t>(*getWindow()) > l)
    return emitOpError() << "observation window (" << *getWindow()
                         << ") is longer than the " << l << " tokens";
  if (failed(verifyScale(*this, getScale()
                                    ? std::optional<double>(
                                          getScale()->convertToDouble())
                                    : std::nullopt)))
    return failure();
  return c.check(getResult().getType(), "result", "[Hkv, L]", {hkv, l});
}

//===----------------------------------------------------------------------===//
// CompressOp
//===----------------------------------------------------------------------===//

LogicalResult CompressOp::verify() {
  ShapeChecker c{*this};
  FailureOr<std::pair<int64_t, int64_t>> hl =
      verifyCache(c, getKeys(), getValues(), getScores());
  if (failed(hl))
    return failure();
  auto [h, l] = *hl;
  if (failed(verifyCompressed(c, getKeys(), getValues(),
                              getCompressedKeys().getType(),
                              getCompressedValues().getType(),
                              getPositions().getType(), getCounts().getType(),
                              getCompressedScores().getType(), h)) ||
      failed(c.check(getLengths().getType(), "lengths", "[Hkv]", {h})))
    return failure();

  PolicyAttr policy = getPolicy();
  int64_t capacity = dim(getCompressedKeys(), 1);
  if (ShapedType::isDynamic(capacity))
    return success();
  if (policy.getKind() == PolicyKind::full) {
    if (!ShapedType::isDynamic(l) && capacity != l)
      return emitOpError() << "policy 'full' keeps all " << l
                           << " tokens, but the result capacity is "
                           << capacity << " slots";
    return success();
  }
  int64_t budget;
  if (std::optional<int64_t> slots = policy.getStaticBudget()) {
    budget = *slots;
    if (budget > capacity)
      return emitOpError() << "budget of " << budget
                           << " slots is larger than the result capacity ("
                           << capacity << " slots)";
    if (budget < capacity)
      return emitOpError() << "result capacity (" << capacity
                           << " slots) must equal the budget of " << budget
                           << " slots";
  } else {
    if (ShapedType::isDynamic(l))
      return success();
    budget = policy.getBudget(l);
    if (budget != capacity)
      return emitOpError()
             << "ratio " << formatNumber(policy.getRatio()->convertToDouble())
             << " of " << l << " tokens is a budget of " << budget
             << " slots, but the result capacity is " << capacity << " slots";
  }
  // A cache that fits is returned as is; otherwise the budget must leave
  // room for what the policy keeps exactly (checked when L may exceed B).
  if (!ShapedType::isDynamic(l) && l <= budget)
    return success();
  if (policy.getKind() == PolicyKind::streaming) {
    if (policy.getSink() > budget)
      return emitOpError() << "budget of " << budget
                           << " slots is smaller than 'sink' ("
                           << policy.getSink() << ")";
  } else if (policy.getSink() + policy.getRecentFor(budget) >= budget) {
    return emitOpError() << "budget of " << budget
                         << " slots leaves no slot for the middle after sink ("
                         << policy.getSink() << ") and recent ("
                         << policy.getRecentFor(budget) << ")";
  } else {
    int64_t middle = budget - policy.getSink() - policy.getRecentFor(budget);
    int64_t heavy = policy.getHeavyFor(budget);
    if (2 * heavy + 1 > middle)
      return emitOpError() << "'heavy' (" << heavy
                           << ") needs 2 * heavy + 1 <= the " << middle
                           << " middle slots of a budget of " << budget
                           << " slots (at most " << (middle - 1) / 2 << ")";
  }
  return success();
}

namespace {
/// `compress` of a cache that already fits its budget (every `full` policy,
/// or a static `L <= B`) is the identity, zero-padded to the capacity.
/// `compress` with policy `full` on a cache of dynamic length: the cache
/// itself (cast to the result types), every slot its own token.
struct FoldFullCompress : OpRewritePattern<CompressOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CompressOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getPolicy().getKind() != PolicyKind::full)
      return rewriter.notifyMatchFailure(op, "not the full policy");
    auto keysType = cast<RankedTensorType>(op.getKeys().getType());
    if (keysType.hasStaticShape())
      return rewriter.notifyMatchFailure(op, "static: FoldCompressWithinBudget");
    Location loc = op.getLoc();
    auto castTo = [&](Value v, Type t) -> Value {
      return v.getType() == t ? v
                              : tensor::CastOp::create(rewriter, loc, t, v)
                                    .getResult();
    };
    // Dynamic sizes of a [H, L] result from the keys (each dim read once).
    SmallVector<Value, 2> keyDims(2);
    auto keyDim = [&](int64_t i) {
      if (!keyDims[i])
        keyDims[i] = tensor::DimOp::create(rewriter, loc, op.getKeys(), i);
      return keyDims[i];
    };
    auto sizesOf = [&](Type t) {
      SmallVector<Value> dyn;
      auto rt = cast<RankedTensorType>(t);
      for (int64_t i = 0; i < rt.getRank(); ++i)
        if (rt.isDynamicDim(i))
          dyn.push_back(keyDim(i));
      return dyn;
    };
    Value length = arith::IndexCastOp::create(rewriter, loc,
                                              rewriter.getI32Type(), keyDim(1));
    auto generate = [&](Type t, function_ref<Value(OpBuilder &, Location,
                                                   ValueRange)> value) {
      return tensor::GenerateOp::create(
                 rewriter, loc, t, sizesOf(t),
                 [&](OpBuilder &b, Location l, ValueRange ivs) {
                   tensor::YieldOp::create(b, l, value(b, l, ivs));
                 })
          .getResult();
    };
    Value positions = generate(
        op.getPositions().getType(), [](OpBuilder &b, Location l, ValueRange ivs) {
          return arith::IndexCastOp::create(b, l, b.getI32Type(), ivs[1])
              .getResult();
        });
    Value counts = generate(op.getCounts().getType(),
                            [](OpBuilder &b, Location l, ValueRange) {
                              return arith::ConstantIntOp::create(b, l, 1, 32)
                                  .getResult();
                            });
    Value lengths = generate(op.getLengths().getType(),
                             [&](OpBuilder &, Location, ValueRange) {
                               return length;
                             });
    rewriter.replaceOp(
        op, {castTo(op.getKeys(), op.getCompressedKeys().getType()),
             castTo(op.getValues(), op.getCompressedValues().getType()),
             positions, counts,
             castTo(op.getScores(), op.getCompressedScores().getType()),
             lengths});
    return success();
  }
};

struct FoldCompressWithinBudget : OpRewritePattern<CompressOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CompressOp op,
                                PatternRewriter &rewriter) const override {
    auto keysType = cast<RankedTensorType>(op.getKeys().getType());
    auto outType = cast<RankedTensorType>(op.getCompressedKeys().getType());
    if (!keysType.hasStaticShape() || !outType.hasStaticShape() ||
        !cast<RankedTensorType>(op.getValues().getType()).hasStaticShape())
      return rewriter.notifyMatchFailure(op, "needs static shapes");
    int64_t l = keysType.getDimSize(1);
    int64_t capacity = outType.getDimSize(1);
    if (op.getPolicy().getKind() != PolicyKind::full && l > capacity)
      return rewriter.notifyMatchFailure(op, "cache exceeds its budget");

    Location loc = op.getLoc();
    auto pad = [&](Value v, Type resultType) -> Value {
      auto rt = cast<RankedTensorType>(resultType);
      if (v.getType() == rt)
        return v;
      Value zero = arith::ConstantOp::create(
          rewriter, loc, rewriter.getZeroAttr(rt.getElementType()));
      return tensor::createPadHighOp(rt, v, zero, /*nofold=*/false, loc,
                                     rewriter);
    };
    // positions[h, s] = s < L ? s : 0 ; counts[h, s] = s < L ? 1 : 0.
    auto slotMap = [&](Type resultType, bool isCount) -> Value {
      if (isCount && capacity == l)
        return arith::ConstantOp::create(
            rewriter, loc,
            DenseElementsAttr::get(cast<ShapedType>(resultType),
                                   rewriter.getI32IntegerAttr(1).getValue()));
      auto gen = tensor::GenerateOp::create(
          rewriter, loc, resultType, ValueRange{},
          [&](OpBuilder &b, Location nested, ValueRange ivs) {
            Value s = ivs[1];
            Value i32 = arith::IndexCastOp::create(b, nested, b.getI32Type(), s);
            Value kept = isCount ? arith::ConstantIntOp::create(b, nested, 1, 32)
                                       .getResult()
                                 : i32;
            if (capacity > l) {
              Value zero = arith::ConstantIntOp::create(b, nested, 0, 32);
              Value valid = arith::CmpIOp::create(
                  b, nested, arith::CmpIPredicate::slt, s,
                  arith::ConstantIndexOp::create(b, nested, l));
              kept = arith::SelectOp::create(b, nested, valid, kept, zero);
            }
            tensor::YieldOp::create(b, nested, kept);
          });
      return gen.getResult();
    };
    auto lengthsType = cast<RankedTensorType>(op.getLengths().getType());
    Value lengths = arith::ConstantOp::create(
        rewriter, loc,
        DenseElementsAttr::get(lengthsType,
                               rewriter.getI32IntegerAttr(l).getValue()));
    rewriter.replaceOp(
        op, {pad(op.getKeys(), op.getCompressedKeys().getType()),
             pad(op.getValues(), op.getCompressedValues().getType()),
             slotMap(op.getPositions().getType(), /*isCount=*/false),
             slotMap(op.getCounts().getType(), /*isCount=*/true),
             pad(op.getScores(), op.getCompressedScores().getType()), lengths});
    return success();
  }
};
} // namespace

void CompressOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                             MLIRContext *context) {
  results.add<FoldCompressWithinBudget, FoldFullCompress>(context);
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::inferReturnTypes(
    MLIRContext *, std::optional<Location>, AttentionOp::Adaptor adaptor,
    SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInit().getType());
  if (adaptor.getScoresInit())
    types.push_back(adaptor.getScoresInit().getType());
  return success();
}

LogicalResult AttentionOp::verify() {
  ShapeChecker c{*this};
  if (failed(c.checkRank(getQuery().getType(), "query", "[Hq, Lq, D]", 3)))
    return failure();
  FailureOr<std::pair<int64_t, int64_t>> hs =
      verifyCache(c, getKeys(), getValues(), Value());
  if (failed(hs))
    return failure();
  auto [hkv, s] = *hs;
  int64_t hq = dim(getQuery(), 0), lq = dim(getQuery(), 1);
  if (failed(verifyGroups(*this, hq, hkv)) ||
      failed(verifyHeadDim(*this, dim(getQuery(), 2), dim(getKeys(), 2))))
    return failure();
  if (getLengths() &&
      failed(c.check(getLengths().getType(), "lengths", "[Hkv]", {hkv})))
    return failure();
  if (getCounts() &&
      failed(c.check(getCounts().getType(), "counts", "[Hkv, S]", {hkv, s})))
    return failure();
  if (getCountBias() && !getCounts())
    return emitOpError() << "'count_bias' needs a 'counts' operand";
  if (failed(verifyScale(*this, getScale()
                                    ? std::optional<double>(
                                          getScale()->convertToDouble())
                                    : std::nullopt)))
    return failure();
  if (getCausal() && !ShapedType::isDynamic(lq) && !ShapedType::isDynamic(s) &&
      lq > s)
    return emitOpError() << "causal attention of " << lq
                         << " queries needs at least as many slots, got " << s;
  if (getScoresInit() &&
      failed(c.check(getScoresInit().getType(), "scores", "[Hkv, S]",
                     {hkv, s})))
    return failure();
  if (Value mask = getMask()) {
    if (failed(c.checkRank(mask.getType(), "mask", "[Hm, Lq or 1, S]", 3)))
      return failure();
    int64_t hm = dim(mask, 0), mq = dim(mask, 1);
    if (!ShapedType::isDynamic(hm) && !ShapedType::isDynamic(hq) &&
        (hm < 1 || hq % hm != 0))
      return emitOpError() << "mask rows (" << hm
                           << ") must divide the query heads (" << hq << ")";
    if (mq != 1 &&
        failed(c.check(mask.getType(), "mask", "[Hm, Lq or 1, S]",
                       {hm, lq, s})))
      return failure();
    if (failed(c.check(mask.getType(), "mask", "[Hm, Lq or 1, S]",
                       {hm, mq, s})))
      return failure();
  }
  return c.check(getInit().getType(), "output", "[Hq, Lq, Dv]",
                 {hq, lq, dim(getValues(), 2)});
}

//===----------------------------------------------------------------------===//
// AppendOp
//===----------------------------------------------------------------------===//

LogicalResult AppendOp::verify() {
  ShapeChecker c{*this};
  auto cache = cast<RankedTensorType>(getCache().getType());
  auto add = cast<RankedTensorType>(getAdded().getType());
  if (cache.getRank() < 2)
    return emitOpError() << "cache must have rank >= 2 [H, P, ...], got rank "
                         << cache.getRank();
  SmallVector<int64_t> newShape(cache.getShape());
  newShape[1] = add.getRank() >= 2 ? add.getDimSize(1) : ShapedType::kDynamic;
  if (failed(c.check(add, "added", "[H, T, ...] (as the cache but T)",
                     newShape)))
    return failure();
  int64_t h = cache.getDimSize(0), p = cache.getDimSize(1),
          t = add.getDimSize(1);
  if (failed(c.check(getLengths().getType(), "lengths", "[H]", {h})) ||
      failed(c.check(getNewLengths().getType(), "new lengths", "[H]", {h})))
    return failure();
  SmallVector<int64_t> resultShape(cache.getShape());
  resultShape[1] = ShapedType::isDynamic(p) || ShapedType::isDynamic(t)
                       ? ShapedType::kDynamic
                       : p + t;
  return c.check(getResult().getType(), "result", "[H, P + T, ...]",
                 resultShape);
}
