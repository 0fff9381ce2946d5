//===- RaiseAttention.cpp - find attention in upstream IR -----------------===//
//
// Raises scaled dot-product attention written with linalg/tensor/arith/math
// on tensors — as torch-mlir's linalg-on-tensors, IREE-style pipelines or
// hand-written IR spell it — to one `kvcache.attention`.
//
// Every linalg contraction (named or generic, any rank) is a candidate. The
// matcher (Raise/AttentionMatch.cpp) reads the program in a canonical
// scalar-expression form (Raise/ScalarExpr.cpp) that sees through views,
// fusion, casts and op spellings, and proves softmax(alpha * Q.K^T + bias).V;
// this file turns the proof into IR:
//
//   Q, K, V   -> [heads, tokens, features] views (linalg.transpose when the
//                layout needs it + tensor.collapse_shape/expand_shape)
//   bias      -> nothing (all keys visible), `causal` (proved on the index
//                arithmetic), or a materialized `mask` operand (one generic
//                that recomputes the bias on [mask heads, queries, keys])
//   result    -> a generic copy into the contraction's own result layout
//
// The rest of the program is not rewritten; the ops attention replaced die
// (run --canonicalize). With `remarks=true` every raised attention and every
// rejected attention-like candidate (a contraction with a softmax-like
// factor) gets a remark.
//
//===----------------------------------------------------------------------===//

#include "Raise/AttentionMatch.h"

#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/Verifier.h"

#include <functional>

namespace kvmerge::kvcache {
#define GEN_PASS_DEF_KVCACHERAISEATTENTION
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h.inc"
} // namespace kvmerge::kvcache

using namespace mlir;
using namespace kvmerge::kvcache;
using namespace kvmerge::raise;

namespace {

/// Reshapes `v` to `shape` (same number of elements) with one collapse or
/// expand when a reassociation exists, else through a rank-1 collapse.
Value reshapeTo(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> shape) {
  auto src = cast<RankedTensorType>(v.getType());
  auto dst = RankedTensorType::get(shape, src.getElementType());
  if (src == dst)
    return v;
  if (src.getRank() > dst.getRank()) {
    if (auto re = getReassociationIndicesForReshape(src, dst))
      return tensor::CollapseShapeOp::create(b, loc, dst, v, *re);
  } else if (src.getRank() < dst.getRank()) {
    if (auto re = getReassociationIndicesForReshape(src, dst))
      return tensor::ExpandShapeOp::create(b, loc, dst, v, *re);
  }
  int64_t total = src.getNumElements();
  auto flat = RankedTensorType::get({total}, src.getElementType());
  SmallVector<ReassociationIndices> all(1);
  for (int64_t i = 0; i < src.getRank(); ++i)
    all[0].push_back(i);
  Value f = src.getRank() == 1
                ? v
                : tensor::CollapseShapeOp::create(b, loc, flat, v, all)
                      .getResult();
  SmallVector<ReassociationIndices> back(1);
  for (int64_t i = 0; i < dst.getRank(); ++i)
    back[0].push_back(i);
  return tensor::ExpandShapeOp::create(b, loc, dst, f, back);
}

/// A leaf tensor as [heads, tokens, features].
Value leafAs3D(OpBuilder &b, Location loc, const Leaf &leaf, int64_t tokens,
               int64_t features) {
  Value t = leaf.load->value;
  auto type = cast<RankedTensorType>(t.getType());
  SmallVector<int64_t> perm(leaf.headPositions);
  if (leaf.tokenPosition >= 0)
    perm.push_back(leaf.tokenPosition);
  if (leaf.featurePosition >= 0)
    perm.push_back(leaf.featurePosition);
  if (!llvm::equal(perm, llvm::seq<int64_t>(0, perm.size()))) {
    SmallVector<int64_t> shape;
    for (int64_t p : perm)
      shape.push_back(type.getDimSize(p));
    Value init = tensor::EmptyOp::create(b, loc, shape, type.getElementType());
    t = linalg::TransposeOp::create(b, loc, t, init, perm)->getResult(0);
  }
  return reshapeTo(b, loc, t, {leaf.numHeads, tokens, features});
}

/// Affine index arithmetic as arith ops on `dims`.
Value emitAffine(OpBuilder &b, Location loc, AffineExpr e,
                 ArrayRef<Value> dims) {
  if (auto d = dyn_cast<AffineDimExpr>(e))
    return dims[d.getPosition()];
  if (auto c = dyn_cast<AffineConstantExpr>(e))
    return arith::ConstantIndexOp::create(b, loc, c.getValue());
  auto bin = cast<AffineBinaryOpExpr>(e);
  Value l = emitAffine(b, loc, bin.getLHS(), dims);
  Value r = emitAffine(b, loc, bin.getRHS(), dims);
  switch (e.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, loc, l, r);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, loc, l, r);
  case AffineExprKind::FloorDiv:
    return arith::FloorDivSIOp::create(b, loc, l, r);
  case AffineExprKind::CeilDiv:
    return arith::CeilDivSIOp::create(b, loc, l, r);
  default:
    return arith::RemSIOp::create(b, loc, l, r);
  }
}

/// A tensor whose element at the generic's loop indices is `expr`: one
/// all-parallel linalg.generic with a loop per entry of `loopDims` (the
/// expression's loop dimension, or none for a unit loop) of sizes `shape`.
/// The tensors the expression reads become the generic's inputs.
Value emitExprTensor(OpBuilder &b, Location loc, ExprContext &cx, Expr *expr,
                     ArrayRef<std::optional<unsigned>> loopDims,
                     ArrayRef<int64_t> shape) {
  MLIRContext *ctx = b.getContext();
  unsigned rank = shape.size();
  llvm::DenseMap<AffineExpr, AffineExpr> toLoop;
  for (auto [i, d] : llvm::enumerate(loopDims))
    if (d)
      toLoop[cx.dim(*d)] = getAffineDimExpr(i, ctx);

  Expr *root = cx.inlineElementwise(expr);
  SmallVector<Expr *> loads;
  llvm::DenseSet<Expr *> seen;
  std::function<void(Expr *)> collect = [&](Expr *e) {
    if (!seen.insert(e).second)
      return;
    if (e->kind == Expr::Kind::Load)
      loads.push_back(e);
    for (Expr *o : e->operands)
      collect(o);
  };
  collect(root);
  SmallVector<Value> inputs;
  SmallVector<AffineMap> maps;
  for (Expr *l : loads) {
    inputs.push_back(l->value);
    SmallVector<AffineExpr> idx;
    for (AffineExpr e : l->idx)
      idx.push_back(e.replace(toLoop));
    maps.push_back(AffineMap::get(rank, 0, idx, ctx));
  }
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = tensor::EmptyOp::create(b, loc, shape, root->type);
  SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, inputs, ValueRange{init}, maps, iters,
      [&](OpBuilder &nb, Location l, ValueRange args) {
        SmallVector<Value> idx;
        for (unsigned i = 0; i < rank; ++i)
          idx.push_back(linalg::IndexOp::create(nb, l, i));
        llvm::DenseMap<Expr *, Value> memo;
        std::function<Value(Expr *)> emit = [&](Expr *e) -> Value {
          if (Value v = memo.lookup(e))
            return v;
          Value v;
          switch (e->kind) {
          case Expr::Kind::Load:
            v = args[llvm::find(loads, e) - loads.begin()];
            break;
          case Expr::Kind::Index:
            v = emitAffine(nb, l, e->idx[0].replace(toLoop), idx);
            break;
          case Expr::Kind::Const:
            v = arith::ConstantOp::create(nb, l, cast<TypedAttr>(e->attr));
            break;
          case Expr::Kind::External:
            v = e->value;
            break;
          default: {
            OperationState st(l, e->name.getValue());
            for (Expr *o : e->operands)
              st.addOperands(emit(o));
            st.addTypes(e->type);
            if (auto attrs = dyn_cast_or_null<DictionaryAttr>(e->attr))
              st.addAttributes(attrs.getValue());
            v = nb.create(st)->getResult(0);
          }
          }
          memo[e] = v;
          return v;
        };
        linalg::YieldOp::create(nb, l, emit(root));
      });
  return generic->getResult(0);
}

/// The mask operand [Hm, Lq or 1, S]: the bias recomputed over the mask's
/// head loops, the query (when it depends on it) and the keys.
Value emitMask(OpBuilder &b, Location loc, ExprContext &cx,
               const AttentionMatch &a) {
  SmallVector<std::optional<unsigned>> loops;
  SmallVector<int64_t> shape;
  int64_t rows = 1;
  for (unsigned h : ArrayRef<unsigned>(a.heads).take_front(a.maskHeads)) {
    loops.push_back(h);
    shape.push_back(cx.extent(h));
    rows *= cx.extent(h);
  }
  loops.push_back(a.maskPerQuery ? a.m : std::nullopt);
  shape.push_back(a.maskPerQuery ? a.numQueries : 1);
  loops.push_back(a.n);
  shape.push_back(a.numKeys);
  Value t = emitExprTensor(b, loc, cx, a.bias, loops, shape);
  return reshapeTo(b, loc, t, {rows, shape[shape.size() - 2], a.numKeys});
}

/// An operand as [heads, tokens, features]: a view of its tensor, or, when
/// it was computed inside the contraction, materialized per query head.
Value operandAs3D(OpBuilder &b, Location loc, ExprContext &cx,
                  const AttentionMatch &a, const Leaf &leaf,
                  std::optional<unsigned> token, int64_t tokens,
                  std::optional<unsigned> feature, int64_t features) {
  if (!leaf.computed)
    return leafAs3D(b, loc, leaf, tokens, features);
  SmallVector<std::optional<unsigned>> loops;
  SmallVector<int64_t> shape;
  for (unsigned h : a.heads) {
    loops.push_back(h);
    shape.push_back(cx.extent(h));
  }
  loops.push_back(token);
  shape.push_back(tokens);
  loops.push_back(feature);
  shape.push_back(features);
  Value t = emitExprTensor(b, loc, cx, leaf.computed, loops, shape);
  return reshapeTo(b, loc, t, {a.numHeads, tokens, features});
}

/// The attention output [Hq, Lq, Dv] in the layout of the contraction's
/// result (a copy generic; identity layouts fold away).
Value scatterResult(OpBuilder &b, Location loc, ExprContext &cx,
                    const AttentionMatch &a, Value out) {
  MLIRContext *ctx = b.getContext();
  auto resultType = cast<RankedTensorType>(a.pv->getResult(0).getType());
  unsigned rank = resultType.getRank();
  auto loopOf = [&](unsigned d) {
    return getAffineDimExpr(llvm::find(a.outDims, d) - a.outDims.begin(), ctx);
  };
  AffineExpr flat = getAffineConstantExpr(0, ctx);
  for (unsigned h : a.heads)
    flat = flat * cx.extent(h) + loopOf(h);
  AffineExpr zero = getAffineConstantExpr(0, ctx);
  AffineMap in = AffineMap::get(
      rank, 0, {flat, a.m ? loopOf(*a.m) : zero, a.dv ? loopOf(*a.dv) : zero},
      ctx);
  Value init = tensor::EmptyOp::create(b, loc, resultType.getShape(),
                                       resultType.getElementType());
  SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{resultType}, ValueRange{out}, ValueRange{init},
             ArrayRef<AffineMap>{in, b.getMultiDimIdentityMap(rank)}, iters,
             [](OpBuilder &nb, Location l, ValueRange args) {
               linalg::YieldOp::create(nb, l, args[0]);
             })
      ->getResult(0);
}

std::string describe(const AttentionMatch &a, Value mask) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "raised attention (G = " << a.group()
     << ", scale = " << formatNumber(a.scale);
  if (a.mask == MaskKind::causal)
    os << ", causal";
  if (mask) {
    auto t = cast<RankedTensorType>(mask.getType());
    os << ", mask " << t.getDimSize(0) << "x" << t.getDimSize(1) << "x"
       << t.getDimSize(2) << "x" << t.getElementType();
  }
  os << ")";
  if (a.safeSoftmax)
    os << " with a safe softmax";
  os << ": " << a.numHeads << " query heads, " << a.k_.numHeads
     << " KV heads, " << a.numQueries << " queries, " << a.numKeys << " keys";
  for (auto [leaf, name] : {std::pair{&a.q, "Q"}, std::pair{&a.k_, "K"},
                            std::pair{&a.v, "V"}})
    if (leaf->computed)
      os << "; " << name << " recomputed (it was fused into the contraction)";
  return s;
}

struct RaiseAttentionPass
    : kvmerge::kvcache::impl::KVCacheRaiseAttentionBase<RaiseAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    // IREE's own input form keeps attention as one op we do not rewrite.
    getOperation()->walk([&](Operation *op) {
      if (op->getName().getStringRef() == "iree_linalg_ext.attention")
        op->emitWarning()
            << "IREE's input form (iree_linalg_ext.attention) is not raised: "
               "run kvmerge on the frontend's linalg-on-tensors (torch-mlir) "
               "and give iree-compile the output of --kvmerge-export-upstream "
               "(docs/iree.md)";
    });

    SmallVector<linalg::LinalgOp> candidates;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (op.getNumReductionLoops() > 0 && op->getNumResults() == 1 &&
          op.hasPureTensorSemantics())
        candidates.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : candidates) {
      // A fresh context per candidate: raising changes the IR under it.
      ExprContext cx(&getContext());
      if (!looksLikeAttention(cx, op)) {
        if (remarks) {
          std::string why = opaqueAttention(cx, op);
          if (!why.empty())
            op->emitRemark() << "not raised to kvcache.attention: " << why;
        }
        continue;
      }
      std::string why;
      FailureOr<AttentionMatch> match = matchAttention(cx, op, why);
      if (failed(match)) {
        if (remarks)
          op->emitRemark() << "not raised to kvcache.attention: " << why;
        continue;
      }
      if (failed(raise(rewriter, cx, *match)))
        continue;
    }
  }

  LogicalResult raise(IRRewriter &rewriter, ExprContext &cx,
                      const AttentionMatch &a) {
    Operation *op = a.pv;
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    // Block of the rewrite: everything is built before `op`, erased on
    // failure.
    Block *block = op->getBlock();
    Operation *before = op->getPrevNode();
    Value q = operandAs3D(rewriter, loc, cx, a, a.q, a.m, a.numQueries, a.k,
                          a.headDim);
    Value k = operandAs3D(rewriter, loc, cx, a, a.k_, a.n, a.numKeys, a.k,
                          a.headDim);
    Value v = operandAs3D(rewriter, loc, cx, a, a.v, a.n, a.numKeys, a.dv,
                          a.valueDim);
    Value mask;
    if (a.mask == MaskKind::additive || a.mask == MaskKind::boolean)
      mask = emitMask(rewriter, loc, cx, a);
    Type elt = cast<RankedTensorType>(op->getResult(0).getType())
                   .getElementType();
    Value init = tensor::EmptyOp::create(
        rewriter, loc, ArrayRef<int64_t>{a.numHeads, a.numQueries, a.valueDim},
        elt);
    auto att = AttentionOp::create(
        rewriter, loc, init.getType(), /*scores=*/Type(), q, k, v,
        /*lengths=*/Value(), /*counts=*/Value(), mask, init,
        /*scores_init=*/Value(), rewriter.getF64FloatAttr(a.scale),
        a.mask == MaskKind::causal ? rewriter.getUnitAttr() : UnitAttr(),
        UnitAttr());
    std::string message;
    LogicalResult valid = [&] {
      ScopedDiagnosticHandler capture(&getContext(), [&](Diagnostic &d) {
        message = d.str();
        return success();
      });
      return mlir::verify(att);
    }();
    if (failed(valid)) {
      // Erase what was built (in reverse order).
      SmallVector<Operation *> built;
      for (Operation *it = before ? before->getNextNode() : &block->front();
           it != op; it = it->getNextNode())
        built.push_back(it);
      for (Operation *b : llvm::reverse(built))
        rewriter.eraseOp(b);
      if (remarks)
        op->emitRemark() << "not raised to kvcache.attention: " << message;
      return failure();
    }
    if (remarks)
      att->emitRemark() << describe(a, mask);
    Value out = scatterResult(rewriter, loc, cx, a, att.getResult());
    rewriter.replaceOp(op, out);
    return success();
  }
};

} // namespace
