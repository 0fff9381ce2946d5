//===- RaiseAttention.cpp - find attention in upstream IR -----------------===//
//
// Recognizes scaled dot-product attention as frontends (torch-mlir's
// linalg-on-tensors, IREE inputs) spell it with linalg/tensor/arith/math
// on tensors and raises it to `kvcache.attention`:
//
//   S = Q . K^T      contraction (matmul / batch_matmul / generic), K^T via
//                    the map or a linalg.transpose
//   S = S * c        (or S / c) by a constant — required
//   S = S + mask     optional; only causal masks (constant, or a masked-fill
//                    generic on linalg.index) are accepted
//   P = softmax(S)   over the key axis: linalg.softmax or the
//                    max / sub / exp / sum / div generic chain
//   O = P . V        contraction
//
// with GQA sharing through `linalg.broadcast` + `tensor.collapse_shape` of
// K and V, and f16/bf16 data through extf/truncf around the reductions.
// Anything else is left alone; with `remarks=true` every rejected candidate
// (a contraction whose LHS comes from a softmax-like value) gets a remark
// saying why.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/Verifier.h"

#include <cmath>

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHERAISEATTENTION
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {

/// Why a candidate is not attention; empty when it is.
using Why = std::string;

//===----------------------------------------------------------------------===//
// Small matchers
//===----------------------------------------------------------------------===//

/// The single-op body of an elementwise linalg.generic, or null.
Operation *singleBodyOp(linalg::GenericOp g) {
  Block &body = g.getRegion().front();
  if (body.getOperations().size() != 2)
    return nullptr;
  return &body.front();
}

bool allParallelIdentity(linalg::LinalgOp op) {
  return op.getNumLoops() == op.getNumParallelLoops() &&
         llvm::all_of(op.getIndexingMapsArray(),
                      [](AffineMap m) { return m.isIdentity(); });
}

/// Follows elementwise extf/truncf (linalg.generic bodies or arith ops on
/// tensors) back to their source.
Value skipCasts(Value v) {
  while (Operation *def = v.getDefiningOp()) {
    if (isa<arith::ExtFOp, arith::TruncFOp>(def)) {
      v = def->getOperand(0);
      continue;
    }
    auto g = dyn_cast<linalg::GenericOp>(def);
    if (!g || g.getNumDpsInputs() != 1 || !allParallelIdentity(g))
      return v;
    Operation *op = singleBodyOp(g);
    if (!op || !isa<arith::ExtFOp, arith::TruncFOp>(op) ||
        op->getOperand(0) != g.getRegion().front().getArgument(0))
      return v;
    v = g.getDpsInputs()[0];
  }
  return v;
}

/// A float constant: scalar arith.constant, splat tensor constant, or the
/// value of a linalg.fill.
std::optional<double> constantFloat(Value v) {
  FloatAttr f;
  if (matchPattern(v, m_Constant(&f)))
    return f.getValueAsDouble();
  DenseFPElementsAttr dense;
  if (matchPattern(v, m_Constant(&dense)) && dense.isSplat())
    return dense.getSplatValue<APFloat>().convertToDouble();
  if (auto fill = v.getDefiningOp<linalg::FillOp>())
    return constantFloat(fill.getInputs()[0]);
  return std::nullopt;
}

bool isZeroInit(Value init) {
  std::optional<double> c = constantFloat(init);
  return c && *c == 0.0;
}

/// The value feeding `v` into a body op: either a block argument of an
/// input (returns the input operand) or a value from above (constant).
struct BodyOperand {
  Value input;               // the tensor input, if a block argument
  std::optional<double> cst; // the constant, if one
};
BodyOperand bodyOperand(linalg::GenericOp g, Value v) {
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    if (arg.getOwner() != &g.getRegion().front() ||
        arg.getArgNumber() >= g.getNumDpsInputs())
      return {};
    Value input = g.getDpsInputs()[arg.getArgNumber()];
    return {input, constantFloat(input)};
  }
  return {Value(), constantFloat(v)};
}

//===----------------------------------------------------------------------===//
// Contractions
//===----------------------------------------------------------------------===//

/// A 3-loop batched contraction out[b, m, n] = sum_k lhs . rhs with a
/// zero-initialized accumulator, its operands normalized to
/// lhs[b, m, k] and rhs as [b, n, k] (`rhsNK`) or [b, k, n].
struct Contraction {
  linalg::LinalgOp op;
  Value lhs, rhs;
  bool lhsMK = true, rhsNK = false;
};

FailureOr<Contraction> matchContraction(Operation *def, Why &why) {
  auto op = dyn_cast_or_null<linalg::LinalgOp>(def);
  if (!op || !linalg::isaContractionOpInterface(op)) {
    why = "not produced by a contraction";
    return failure();
  }
  FailureOr<linalg::ContractionDimensions> dims =
      linalg::inferContractionDims(op);
  if (failed(dims) || dims->batch.size() != 1 || dims->m.size() != 1 ||
      dims->n.size() != 1 || dims->k.size() != 1) {
    why = "contraction is not a batched [heads, rows, cols] matmul";
    return failure();
  }
  if (op.getNumDpsInits() != 1 || !isZeroInit(op.getDpsInits()[0])) {
    why = "contraction accumulates into a non-zero tensor";
    return failure();
  }
  unsigned b = dims->batch[0], m = dims->m[0], n = dims->n[0], k = dims->k[0];
  auto maps = op.getIndexingMapsArray();
  auto results = [](AffineMap map) {
    SmallVector<unsigned> r;
    for (AffineExpr e : map.getResults())
      r.push_back(cast<AffineDimExpr>(e).getPosition());
    return r;
  };
  for (AffineMap map : maps)
    if (!map.isProjectedPermutation()) {
      why = "contraction indexing is not a permutation";
      return failure();
    }
  SmallVector<unsigned> lhs = results(maps[0]), rhs = results(maps[1]),
                        out = results(maps[2]);
  Contraction c{op, op.getDpsInputs()[0], op.getDpsInputs()[1]};
  if (out != SmallVector<unsigned>{b, m, n}) {
    why = "contraction result is not laid out [heads, rows, cols]";
    return failure();
  }
  if (lhs == SmallVector<unsigned>{b, m, k})
    c.lhsMK = true;
  else if (lhs == SmallVector<unsigned>{b, k, m})
    c.lhsMK = false;
  else {
    why = "contraction LHS is not [heads, rows, k]";
    return failure();
  }
  if (rhs == SmallVector<unsigned>{b, n, k})
    c.rhsNK = true;
  else if (rhs == SmallVector<unsigned>{b, k, n})
    c.rhsNK = false;
  else {
    why = "contraction RHS is not [heads, k, cols]";
    return failure();
  }
  return c;
}

/// `v` seen through a [0, 2, 1] transpose: the source if `v` is one,
/// otherwise a new linalg.transpose of `v` (built at `b`).
Value untranspose(OpBuilder &b, Value v) {
  if (auto t = v.getDefiningOp<linalg::TransposeOp>())
    if (t.getPermutation() == ArrayRef<int64_t>{0, 2, 1})
      return t.getInput();
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape{type.getDimSize(0), type.getDimSize(2),
                             type.getDimSize(1)};
  Value init = tensor::EmptyOp::create(b, v.getLoc(), shape,
                                       type.getElementType());
  return linalg::TransposeOp::create(b, v.getLoc(), v, init,
                                     ArrayRef<int64_t>{0, 2, 1})
      ->getResult(0);
}

/// K or V of a query head, seen through GQA sharing: the [Hkv, N, D] tensor
/// broadcast to [Hkv, G, N, D] and collapsed to [Hq, N, D]. Returns the
/// source and G (1 when not shared).
std::pair<Value, int64_t> unshare(Value v) {
  v = skipCasts(v);
  auto collapse = v.getDefiningOp<tensor::CollapseShapeOp>();
  if (!collapse || collapse.getSrcType().getRank() != 4 ||
      collapse.getReassociationIndices() !=
          SmallVector<ReassociationIndices>{{0, 1}, {2}, {3}})
    return {v, 1};
  Value src = skipCasts(collapse.getSrc());
  int64_t g = collapse.getSrcType().getDimSize(1);
  if (auto bc = src.getDefiningOp<linalg::BroadcastOp>())
    if (bc.getDimensions() == ArrayRef<int64_t>{1})
      return {skipCasts(bc.getInput()), g};
  if (auto gen = src.getDefiningOp<linalg::GenericOp>()) {
    MLIRContext *ctx = gen.getContext();
    AffineMap bcast = AffineMap::get(
        4, 0, {getAffineDimExpr(0, ctx), getAffineDimExpr(2, ctx),
               getAffineDimExpr(3, ctx)},
        ctx);
    Operation *body = &gen.getRegion().front().front();
    if (gen.getNumDpsInputs() == 1 &&
        gen.getNumLoops() == gen.getNumParallelLoops() &&
        gen.getIndexingMapsArray()[0] == bcast &&
        isa<linalg::YieldOp>(body) &&
        body->getOperand(0) == gen.getRegion().front().getArgument(0))
      return {skipCasts(gen.getDpsInputs()[0]), g};
  }
  return {v, 1};
}

//===----------------------------------------------------------------------===//
// Softmax, mask, scale
//===----------------------------------------------------------------------===//

/// Whether `g` reduces its only input over the last of three loops with a
/// body `combine(in, acc)` of kind `Combine`, into an init filled with a
/// constant satisfying `initOk`.
template <typename... Combine>
bool isLastDimReduction(linalg::GenericOp g, Value input,
                        function_ref<bool(double)> initOk) {
  if (!g || g.getNumDpsInputs() != 1 || g.getDpsInputs()[0] != input ||
      g.getNumLoops() != 3 || g.getNumReductionLoops() != 1 ||
      g.getIteratorTypesArray()[2] != utils::IteratorType::reduction)
    return false;
  Operation *op = singleBodyOp(g);
  if (!op || !isa<Combine...>(op))
    return false;
  std::optional<double> init = constantFloat(g.getDpsInits()[0]);
  return init && initOk(*init);
}

/// Matches softmax over the last axis; returns its input.
FailureOr<Value> matchSoftmax(Value p, Why &why) {
  p = skipCasts(p);
  if (auto sm = p.getDefiningOp<linalg::SoftmaxOp>()) {
    auto type = cast<RankedTensorType>(sm.getInput().getType());
    if (static_cast<int64_t>(sm.getDimension()) != type.getRank() - 1) {
      why = "softmax is not over the key axis";
      return failure();
    }
    return sm.getInput();
  }
  // div(e, sum(e)), e = exp(x - max(x)) (one generic, or sub then exp).
  auto div = p.getDefiningOp<linalg::GenericOp>();
  Operation *divOp = div ? singleBodyOp(div) : nullptr;
  if (!divOp || !isa<arith::DivFOp>(divOp) || div.getNumDpsInputs() != 2) {
    why = "probabilities do not come from a softmax";
    return failure();
  }
  BodyOperand num = bodyOperand(div, divOp->getOperand(0));
  BodyOperand den = bodyOperand(div, divOp->getOperand(1));
  if (!num.input || !den.input) {
    why = "softmax normalization is not exp / sum";
    return failure();
  }
  auto sum = den.input.getDefiningOp<linalg::GenericOp>();
  if (!isLastDimReduction<arith::AddFOp>(sum, num.input,
                                         [](double c) { return c == 0.0; })) {
    why = "softmax is not normalized by a sum over the key axis";
    return failure();
  }
  // e = exp(x - m) in one generic, or exp(generic sub).
  auto expGen = num.input.getDefiningOp<linalg::GenericOp>();
  if (!expGen) {
    why = "softmax numerator is not exp(x - max)";
    return failure();
  }
  Block &eb = expGen.getRegion().front();
  auto yield = cast<linalg::YieldOp>(eb.getTerminator());
  auto exp = yield.getOperand(0).getDefiningOp<math::ExpOp>();
  if (!exp) {
    why = "softmax numerator is not exp(x - max)";
    return failure();
  }
  Value x, m;
  if (auto sub = exp.getOperand().getDefiningOp<arith::SubFOp>()) {
    x = bodyOperand(expGen, sub.getLhs()).input;
    m = bodyOperand(expGen, sub.getRhs()).input;
  } else {
    auto subGen = bodyOperand(expGen, exp.getOperand())
                      .input.getDefiningOp<linalg::GenericOp>();
    Operation *subOp = subGen ? singleBodyOp(subGen) : nullptr;
    if (subOp && isa<arith::SubFOp>(subOp)) {
      x = bodyOperand(subGen, subOp->getOperand(0)).input;
      m = bodyOperand(subGen, subOp->getOperand(1)).input;
    }
  }
  if (!x || !m) {
    why = "softmax numerator is not exp(x - max)";
    return failure();
  }
  auto max = m.getDefiningOp<linalg::GenericOp>();
  if (!isLastDimReduction<arith::MaximumFOp, arith::MaxNumFOp>(
          max, x, [](double c) { return c <= -1e30 || std::isinf(c); })) {
    why = "softmax does not subtract the maximum over the key axis";
    return failure();
  }
  return x;
}

bool isMaskingValue(std::optional<double> c) {
  return c && (*c <= -1e4 || (std::isinf(*c) && *c < 0));
}

/// Whether `mask` [.., M, N] is causal: 0 at (i, j <= i + N - M), a large
/// negative value elsewhere.
bool isCausalConstant(Value mask) {
  DenseFPElementsAttr dense;
  if (!matchPattern(mask, m_Constant(&dense)))
    return false;
  auto type = cast<RankedTensorType>(dense.getType());
  if (type.getRank() < 2)
    return false;
  int64_t rows = type.getDimSize(type.getRank() - 2);
  int64_t cols = type.getDimSize(type.getRank() - 1);
  int64_t i = 0;
  for (APFloat v : dense.getValues<APFloat>()) {
    int64_t col = i % cols, row = (i / cols) % rows;
    bool visible = col <= row + cols - rows;
    double d = v.convertToDouble();
    if (visible ? d != 0.0 : !isMaskingValue(d))
      return false;
    ++i;
  }
  return true;
}

/// A masked-fill generic: select(index(2) > index(1) + (N - M), NEG, x),
/// i.e. query i of the last M positions does not see keys after it.
bool isCausalFill(linalg::GenericOp g, Value &x) {
  if (!g || g.getNumDpsInputs() != 1 || !allParallelIdentity(g) ||
      g.getNumLoops() != 3)
    return false;
  auto yield = cast<linalg::YieldOp>(g.getRegion().front().getTerminator());
  auto sel = yield.getOperand(0).getDefiningOp<arith::SelectOp>();
  if (!sel || sel.getFalseValue() != g.getRegion().front().getArgument(0) ||
      !isMaskingValue(constantFloat(sel.getTrueValue())))
    return false;
  auto cmp = sel.getCondition().getDefiningOp<arith::CmpIOp>();
  if (!cmp)
    return false;
  auto type = cast<RankedTensorType>(g.getDpsInputs()[0].getType());
  int64_t offset = type.getDimSize(2) - type.getDimSize(1); // N - M
  // `v` is linalg.index(dim) + c; returns dim (or -1) and adds c to `c`.
  auto indexPlus = [](Value v, int64_t &c) -> int64_t {
    if (auto add = v.getDefiningOp<arith::AddIOp>()) {
      IntegerAttr k;
      Value other;
      if (matchPattern(add.getRhs(), m_Constant(&k)))
        other = add.getLhs();
      else if (matchPattern(add.getLhs(), m_Constant(&k)))
        other = add.getRhs();
      else
        return -1;
      c += k.getInt();
      v = other;
    }
    if (auto idx = v.getDefiningOp<linalg::IndexOp>())
      return idx.getDim();
    return -1;
  };
  int64_t lhsOff = 0, rhsOff = 0;
  int64_t lhs = indexPlus(cmp.getLhs(), lhsOff);
  int64_t rhs = indexPlus(cmp.getRhs(), rhsOff);
  bool causal = false;
  switch (cmp.getPredicate()) {
  case arith::CmpIPredicate::ugt:
  case arith::CmpIPredicate::sgt: // key > query + offset
    causal = lhs == 2 && rhs == 1 && lhsOff == 0 && rhsOff == offset;
    break;
  case arith::CmpIPredicate::ult:
  case arith::CmpIPredicate::slt: // query + offset < key
    causal = lhs == 1 && rhs == 2 && rhsOff == 0 && lhsOff == offset;
    break;
  default:
    break;
  }
  if (causal)
    x = g.getDpsInputs()[0];
  return causal;
}

/// Matches an optional causal mask on the scores; returns the unmasked
/// scores and sets `causal`.
FailureOr<Value> matchMask(Value s, bool &causal, Why &why) {
  s = skipCasts(s);
  causal = false;
  Value inner;
  auto g = s.getDefiningOp<linalg::GenericOp>();
  if (isCausalFill(g, inner)) {
    causal = true;
    return inner;
  }
  Value a, b;
  if (auto add = s.getDefiningOp<linalg::AddOp>()) {
    a = add.getInputs()[0];
    b = add.getInputs()[1];
  } else if (g && g.getNumDpsInputs() == 2 && singleBodyOp(g) &&
             isa<arith::AddFOp>(singleBodyOp(g)) &&
             g.getNumLoops() == g.getNumParallelLoops()) {
    Operation *addOp = singleBodyOp(g);
    a = bodyOperand(g, addOp->getOperand(0)).input;
    b = bodyOperand(g, addOp->getOperand(1)).input;
    // The scores must be read with the identity map.
    auto maps = g.getIndexingMapsArray();
    if (!a || !b)
      return s;
    if (!maps[g.getDpsInputs()[0] == a ? 0 : 1].isIdentity())
      std::swap(a, b);
  } else {
    return s;
  }
  // One side is the scores (a contraction or a scale); the other the mask.
  for (auto [scores, mask] : {std::pair{a, b}, std::pair{b, a}}) {
    if (isCausalConstant(mask)) {
      causal = true;
      return scores;
    }
  }
  why = "additive mask is not a causal mask";
  return failure();
}

/// Matches the scale of the scores; returns the unscaled scores and the
/// factor.
FailureOr<Value> matchScale(Value s, double &scale, Why &why) {
  s = skipCasts(s);
  Operation *def = s.getDefiningOp();
  auto fail = [&]() -> FailureOr<Value> {
    why = "scores are not scaled by a constant";
    return failure();
  };
  if (auto mul = dyn_cast_or_null<linalg::MulOp>(def)) {
    for (auto [x, c] : {std::pair{mul.getInputs()[0], mul.getInputs()[1]},
                        std::pair{mul.getInputs()[1], mul.getInputs()[0]}})
      if (std::optional<double> f = constantFloat(c)) {
        scale = *f;
        return x;
      }
    return fail();
  }
  if (auto div = dyn_cast_or_null<linalg::DivOp>(def)) {
    if (std::optional<double> f = constantFloat(div.getInputs()[1])) {
      scale = 1.0 / *f;
      return div.getInputs()[0];
    }
    return fail();
  }
  auto g = dyn_cast_or_null<linalg::GenericOp>(def);
  Operation *op = g ? singleBodyOp(g) : nullptr;
  if (!op || g.getNumLoops() != g.getNumParallelLoops() ||
      !isa<arith::MulFOp, arith::DivFOp>(op))
    return fail();
  BodyOperand lhs = bodyOperand(g, op->getOperand(0));
  BodyOperand rhs = bodyOperand(g, op->getOperand(1));
  if (isa<arith::MulFOp>(op)) {
    if (lhs.input && !lhs.cst && rhs.cst) {
      scale = *rhs.cst;
      return lhs.input;
    }
    if (rhs.input && !rhs.cst && lhs.cst) {
      scale = *lhs.cst;
      return rhs.input;
    }
    return fail();
  }
  if (lhs.input && !lhs.cst && rhs.cst && *rhs.cst != 0.0) {
    scale = 1.0 / *rhs.cst;
    return lhs.input;
  }
  return fail();
}

//===----------------------------------------------------------------------===//
// The whole pattern
//===----------------------------------------------------------------------===//

struct Attention {
  Value q, k, v;
  double scale = 1.0;
  bool causal = false;
  bool kNeedsTranspose = false, vNeedsTranspose = false;
};

FailureOr<Attention> matchAttention(Contraction pv, Why &why) {
  Attention a;
  if (!pv.lhsMK) {
    why = "probabilities are not laid out [heads, queries, keys]";
    return failure();
  }
  FailureOr<Value> scores = matchSoftmax(pv.lhs, why);
  if (failed(scores))
    return failure();
  FailureOr<Value> unmasked = matchMask(*scores, a.causal, why);
  if (failed(unmasked))
    return failure();
  FailureOr<Value> unscaled = matchScale(*unmasked, a.scale, why);
  if (failed(unscaled))
    return failure();
  if (!(a.scale > 0.0) || !std::isfinite(a.scale)) {
    why = "scale is not a finite positive number";
    return failure();
  }
  FailureOr<Contraction> qk =
      matchContraction(skipCasts(*unscaled).getDefiningOp(), why);
  if (failed(qk)) {
    why = "scaled scores: " + why;
    return failure();
  }
  if (!qk->lhsMK) {
    why = "queries are not laid out [heads, queries, dim]";
    return failure();
  }
  a.q = skipCasts(qk->lhs);
  a.k = qk->rhs;
  a.kNeedsTranspose = !qk->rhsNK;
  a.v = pv.rhs;
  a.vNeedsTranspose = pv.rhsNK; // V must be [heads, keys, dim]
  return a;
}

struct RaiseAttentionPass
    : kvmerge::kvcache::impl::KVCacheRaiseAttentionBase<RaiseAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> candidates;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (linalg::isaContractionOpInterface(op))
        candidates.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : candidates) {
      if (!op->getBlock())
        continue; // erased with an earlier match
      Why why;
      FailureOr<Contraction> pv = matchContraction(op, why);
      FailureOr<Attention> att =
          succeeded(pv) ? matchAttention(*pv, why) : FailureOr<Attention>();
      if (failed(att)) {
        // Only contractions whose LHS looks like probabilities are
        // candidates worth a remark.
        if (remarks && succeeded(pv) && looksLikeProbabilities(pv->lhs))
          op->emitRemark() << "not raised to kvcache.attention: " << why;
        continue;
      }
      rewriter.setInsertionPoint(op);
      Value k = att->k, v = att->v;
      if (att->kNeedsTranspose)
        k = untranspose(rewriter, k);
      if (att->vNeedsTranspose)
        v = untranspose(rewriter, v);
      auto [kSrc, gk] = unshare(k);
      auto [vSrc, gv] = unshare(v);
      if (gk != gv) {
        if (remarks)
          op->emitRemark() << "not raised to kvcache.attention: K and V are "
                              "shared by different query-head groups";
        continue;
      }
      Value q = att->q;
      Type outType = op->getResult(0).getType();
      auto outTensor = cast<RankedTensorType>(outType);
      Value init = tensor::EmptyOp::create(rewriter, op.getLoc(),
                                           outTensor.getShape(),
                                           outTensor.getElementType());
      auto raised = AttentionOp::create(
          rewriter, op.getLoc(), outType, /*scores=*/Type(), q, kSrc, vSrc,
          /*lengths=*/Value(), /*counts=*/Value(), init, /*scores_init=*/Value(),
          rewriter.getF64FloatAttr(att->scale),
          att->causal ? rewriter.getUnitAttr() : UnitAttr(), UnitAttr());
      // Shapes the op cannot express (its verifier decides) stay as they
      // are; the verifier's message becomes the remark.
      std::string verifierMessage;
      LogicalResult valid = [&] {
        ScopedDiagnosticHandler capture(&getContext(), [&](Diagnostic &d) {
          verifierMessage = d.str();
          return success();
        });
        return mlir::verify(raised);
      }();
      if (failed(valid)) {
        rewriter.eraseOp(raised);
        if (remarks)
          op->emitRemark() << "not raised to kvcache.attention: "
                           << verifierMessage;
        continue;
      }
      if (remarks)
        raised->emitRemark() << "raised attention (G = " << gk
                             << ", scale = " << formatNumber(att->scale)
                             << (att->causal ? ", causal" : "") << ")";
      rewriter.replaceOp(op, raised->getResults());
    }
  }

  static bool looksLikeProbabilities(Value p) {
    p = skipCasts(p);
    Operation *def = p.getDefiningOp();
    if (!def)
      return false;
    if (isa<linalg::SoftmaxOp>(def))
      return true;
    bool hasExp = false;
    def->walk([&](Operation *op) { hasExp |= isa<math::ExpOp, arith::DivFOp>(op); });
    return hasExp;
  }
};

} // namespace
