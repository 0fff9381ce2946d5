//===- ScalarExpr.cpp - tensor programs as scalar expressions -------------===//

#include "ScalarExpr.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SmallBitVector.h"

#include <functional>
#include <limits>

using namespace mlir;
using namespace kvmerge::raise;

using Kind = Expr::Kind;

//===----------------------------------------------------------------------===//
// Nodes
//===----------------------------------------------------------------------===//

void Expr::Profile(llvm::FoldingSetNodeID &id) const {
  id.AddInteger(static_cast<unsigned>(kind));
  id.AddPointer(type.getAsOpaquePointer());
  for (AffineExpr e : idx)
    id.AddPointer(e.getAsOpaquePointer());
  if (kind == Kind::Reduce) {
    // A reduction is identified by where it comes from and where it is read;
    // its reduced dimensions and body follow from that.
    id.AddPointer(origin);
    id.AddInteger(tag);
    return;
  }
  id.AddPointer(value.getAsOpaquePointer());
  id.AddPointer(attr.getAsOpaquePointer());
  id.AddPointer(name.getAsOpaquePointer());
  id.AddInteger(tag);
  for (Expr *o : operands)
    id.AddPointer(o);
}

std::optional<double> Expr::constant() const {
  if (kind != Kind::Const)
    return std::nullopt;
  if (auto f = dyn_cast<FloatAttr>(attr))
    return f.getValueAsDouble();
  if (auto i = dyn_cast<IntegerAttr>(attr)) {
    if (i.getType().isInteger(1))
      return i.getValue().getBoolValue() ? 1.0 : 0.0;
    return static_cast<double>(i.getValue().getSExtValue());
  }
  if (auto b = dyn_cast<BoolAttr>(attr))
    return b.getValue() ? 1.0 : 0.0;
  return std::nullopt;
}

Expr *ExprContext::intern(Expr &proto) {
  llvm::FoldingSetNodeID id;
  proto.Profile(id);
  void *pos = nullptr;
  if (Expr *n = nodes.FindNodeOrInsertPos(id, pos))
    return n;
  Expr *n = new (alloc.Allocate<Expr>()) Expr(proto);
  nodes.InsertNode(n, pos);
  return n;
}

unsigned ExprContext::newDim(int64_t extent) {
  extents.push_back(extent);
  return extents.size() - 1;
}

AffineExpr ExprContext::dim(unsigned d) const {
  return getAffineDimExpr(d, ctx);
}

Expr *ExprContext::load(Value t, ArrayRef<AffineExpr> idx) {
  Expr p;
  p.kind = Kind::Load;
  p.type = cast<ShapedType>(t.getType()).getElementType();
  p.value = t;
  p.idx.assign(idx.begin(), idx.end());
  return intern(p);
}

Expr *ExprContext::index(AffineExpr e) {
  Expr p;
  p.kind = Kind::Index;
  p.type = IndexType::get(ctx);
  p.idx = {e};
  return intern(p);
}

Expr *ExprContext::constant(TypedAttr value) {
  Expr p;
  p.kind = Kind::Const;
  p.type = value.getType();
  p.attr = value;
  return intern(p);
}

Expr *ExprContext::external(Value v) {
  Expr p;
  p.kind = Kind::External;
  p.type = v.getType();
  p.value = v;
  return intern(p);
}

Expr *ExprContext::poison(Type t) {
  Expr p;
  p.kind = Kind::Poison;
  p.type = t;
  return intern(p);
}

Expr *ExprContext::acc(unsigned arg, Type t) {
  Expr p;
  p.kind = Kind::Acc;
  p.type = t;
  p.tag = arg;
  p.hasAcc = true;
  return intern(p);
}

Expr *ExprContext::op(StringRef name, Type type, ArrayRef<Expr *> ops,
                      DictionaryAttr attrs) {
  Expr p;
  p.kind = Kind::Op;
  p.type = type;
  p.name = StringAttr::get(ctx, name);
  if (attrs && !attrs.empty())
    p.attr = attrs;
  p.operands.assign(ops.begin(), ops.end());
  for (Expr *o : ops)
    p.hasAcc |= o->hasAcc;
  return intern(p);
}

Expr *ExprContext::scalar(Value v) {
  TypedAttr attr;
  if (matchPattern(v, m_Constant(&attr)) &&
      (isa<FloatAttr, IntegerAttr>(attr)))
    return constant(attr);
  return external(v);
}

Expr *ExprContext::reduceNode(Operation *origin, unsigned tag,
                              ArrayRef<AffineExpr> key, Type type,
                              function_ref<Expr *(Expr &)> build) {
  Expr p;
  p.kind = Kind::Reduce;
  p.type = type;
  p.origin = origin;
  p.tag = tag;
  p.idx.assign(key.begin(), key.end());
  llvm::FoldingSetNodeID id;
  p.Profile(id);
  void *pos = nullptr;
  if (Expr *n = nodes.FindNodeOrInsertPos(id, pos))
    return n;
  Expr *n = new (alloc.Allocate<Expr>()) Expr(p);
  if (!build(*n))
    return nullptr;
  for (Expr *o : n->operands)
    n->hasAcc |= o->hasAcc;
  // `build` may have interned other nodes: look the slot up again.
  if (Expr *again = nodes.FindNodeOrInsertPos(id, pos))
    return again;
  nodes.InsertNode(n, pos);
  return n;
}

//===----------------------------------------------------------------------===//
// Index expressions
//===----------------------------------------------------------------------===//

namespace {
/// `e` as sum(coef * atom) + constant, atoms being dims or non-linear terms.
void linearize(AffineExpr e, int64_t scale,
               SmallVectorImpl<std::pair<AffineExpr, int64_t>> &terms,
               int64_t &cst) {
  if (auto c = dyn_cast<AffineConstantExpr>(e)) {
    cst += scale * c.getValue();
    return;
  }
  if (auto bin = dyn_cast<AffineBinaryOpExpr>(e)) {
    if (e.getKind() == AffineExprKind::Add) {
      linearize(bin.getLHS(), scale, terms, cst);
      linearize(bin.getRHS(), scale, terms, cst);
      return;
    }
    if (e.getKind() == AffineExprKind::Mul) {
      if (auto c = dyn_cast<AffineConstantExpr>(bin.getRHS())) {
        linearize(bin.getLHS(), scale * c.getValue(), terms, cst);
        return;
      }
      if (auto c = dyn_cast<AffineConstantExpr>(bin.getLHS())) {
        linearize(bin.getRHS(), scale * c.getValue(), terms, cst);
        return;
      }
    }
  }
  for (auto &[atom, coef] : terms)
    if (atom == e) {
      coef += scale;
      return;
    }
  terms.push_back({e, scale});
}

int64_t floorDiv(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
} // namespace

std::optional<std::pair<int64_t, int64_t>>
ExprContext::range(AffineExpr e) const {
  SmallVector<std::pair<AffineExpr, int64_t>> terms;
  int64_t cst = 0;
  linearize(e, 1, terms, cst);
  int64_t lo = cst, hi = cst;
  for (auto [atom, coef] : terms) {
    std::optional<std::pair<int64_t, int64_t>> r;
    if (auto d = dyn_cast<AffineDimExpr>(atom)) {
      int64_t ext = extents[d.getPosition()];
      if (!ShapedType::isDynamic(ext) && ext > 0)
        r = {0, ext - 1};
    } else if (auto bin = dyn_cast<AffineBinaryOpExpr>(atom)) {
      auto c = dyn_cast<AffineConstantExpr>(bin.getRHS());
      auto inner = range(bin.getLHS());
      if (c && c.getValue() > 0 && inner) {
        int64_t k = c.getValue();
        if (atom.getKind() == AffineExprKind::FloorDiv)
          r = {floorDiv(inner->first, k), floorDiv(inner->second, k)};
        else if (atom.getKind() == AffineExprKind::Mod)
          r = inner->first >= 0 && inner->second < k
                  ? *inner
                  : std::pair<int64_t, int64_t>{0, k - 1};
      }
    }
    if (!r)
      return std::nullopt;
    int64_t a = coef * r->first, b = coef * r->second;
    lo += std::min(a, b);
    hi += std::max(a, b);
  }
  return std::pair<int64_t, int64_t>{lo, hi};
}

AffineExpr ExprContext::simplify(AffineExpr e) const {
  // Dimensions of extent 1 are 0.
  llvm::DenseMap<AffineExpr, AffineExpr> zero;
  e.walk([&](AffineExpr sub) {
    if (auto d = dyn_cast<AffineDimExpr>(sub))
      if (extents[d.getPosition()] == 1)
        zero[sub] = getAffineConstantExpr(0, ctx);
  });
  if (!zero.empty())
    e = e.replace(zero);
  unsigned n = extents.size();
  e = simplifyAffineExpr(e, n, 0);
  // (q * c + r) floordiv c = q and mod c = r when 0 <= r < c.
  std::function<AffineExpr(AffineExpr)> rec = [&](AffineExpr x) -> AffineExpr {
    auto bin = dyn_cast<AffineBinaryOpExpr>(x);
    if (!bin)
      return x;
    AffineExpr lhs = rec(bin.getLHS()), rhs = rec(bin.getRHS());
    auto c = dyn_cast<AffineConstantExpr>(rhs);
    bool divmod = x.getKind() == AffineExprKind::FloorDiv ||
                  x.getKind() == AffineExprKind::Mod;
    if (divmod && c && c.getValue() > 0) {
      int64_t k = c.getValue();
      SmallVector<std::pair<AffineExpr, int64_t>> terms;
      int64_t cst = 0;
      linearize(lhs, 1, terms, cst);
      int64_t cq = floorDiv(cst, k);
      AffineExpr quot = getAffineConstantExpr(cq, ctx);
      AffineExpr rem = getAffineConstantExpr(cst - cq * k, ctx);
      for (auto [atom, coef] : terms) {
        if (coef % k == 0)
          quot = quot + atom * (coef / k);
        else
          rem = rem + atom * coef;
      }
      auto r = range(rem);
      if (r && r->first >= 0 && r->second < k)
        return x.getKind() == AffineExprKind::FloorDiv ? quot : rem;
    }
    switch (x.getKind()) {
    case AffineExprKind::Add:
      return lhs + rhs;
    case AffineExprKind::Mul:
      return lhs * rhs;
    case AffineExprKind::FloorDiv:
      return lhs.floorDiv(rhs);
    case AffineExprKind::CeilDiv:
      return lhs.ceilDiv(rhs);
    case AffineExprKind::Mod:
      return lhs % rhs;
    default:
      return x;
    }
  };
  return simplifyAffineExpr(rec(e), n, 0);
}

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

namespace {
SmallVector<AffineExpr> compose(AffineMap map, ArrayRef<AffineExpr> loops) {
  SmallVector<AffineExpr> out;
  for (AffineExpr r : map.getResults())
    out.push_back(r.replaceDimsAndSymbols(loops, {}));
  return out;
}

/// Result `r` of `op` is a copy of one input (transpose, broadcast, fill,
/// copy): returns that input's number.
std::optional<unsigned> viewInput(linalg::LinalgOp op, unsigned r) {
  if (op.getNumLoops() != op.getNumParallelLoops())
    return std::nullopt;
  Block *body = op.getBlock();
  if (!body)
    return std::nullopt;
  Value y = body->getTerminator()->getOperand(r);
  auto arg = dyn_cast<BlockArgument>(y);
  if (!arg || arg.getOwner() != body ||
      arg.getArgNumber() >= op.getNumDpsInputs())
    return std::nullopt;
  AffineMap out = op.getIndexingMapMatchingResult(op->getResult(r));
  if (!out.isProjectedPermutation(/*allowZeroInResults=*/true) ||
      out.getNumDims() != out.getNumResults() - llvm::count_if(
                              out.getResults(), [](AffineExpr e) {
                                return isa<AffineConstantExpr>(e);
                              }))
    return std::nullopt;
  return arg.getArgNumber();
}
} // namespace

Expr *ExprContext::tensorAt(Value t, ArrayRef<AffineExpr> idx) {
  SmallVector<View> trail;
  Expr *e = tensorAtImpl(t, idx, trail);
  if (e->kind == Kind::Load && !trail.empty() && trail.back().first == e->value)
    trail.pop_back();
  if (e->kind == Kind::Load)
    trails.try_emplace(e, trail);
  return e;
}

Expr *ExprContext::tensorAtImpl(Value t, ArrayRef<AffineExpr> rawIdx,
                                SmallVectorImpl<View> &trail) {
  auto tt = dyn_cast<RankedTensorType>(t.getType());
  if (!tt || tt.getRank() != static_cast<int64_t>(rawIdx.size()))
    return external(t);
  SmallVector<AffineExpr> idx;
  for (auto [i, e] : llvm::enumerate(rawIdx))
    idx.push_back(tt.getDimSize(i) == 1 ? getAffineConstantExpr(0, ctx)
                                        : simplify(e));
  trail.push_back({t, idx});
  Operation *def = t.getDefiningOp();
  if (!def)
    return load(t, idx);

  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
    ArrayRef<int64_t> out = expand.getResultType().getShape();
    SmallVector<AffineExpr> src;
    for (const ReassociationIndices &group :
         expand.getReassociationIndices()) {
      AffineExpr lin = getAffineConstantExpr(0, ctx);
      for (int64_t d : group) {
        if (ShapedType::isDynamic(out[d]))
          return load(t, idx);
        lin = lin * out[d] + idx[d];
      }
      src.push_back(lin);
    }
    return tensorAtImpl(expand.getSrc(), src, trail);
  }
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    ArrayRef<int64_t> in = collapse.getSrcType().getShape();
    SmallVector<AffineExpr> src(in.size());
    for (auto [i, group] :
         llvm::enumerate(collapse.getReassociationIndices())) {
      int64_t stride = 1;
      for (int64_t k = group.size() - 1; k >= 0; --k) {
        int64_t d = group[k];
        if (ShapedType::isDynamic(in[d]) && k != 0)
          return load(t, idx);
        AffineExpr e = idx[i].floorDiv(stride);
        if (k != 0)
          e = e % in[d];
        src[d] = e;
        if (k != 0)
          stride *= in[d];
      }
    }
    return tensorAtImpl(collapse.getSrc(), src, trail);
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    if (!slice.getOffsets().empty() || !slice.getStrides().empty())
      return load(t, idx);
    llvm::SmallBitVector dropped = slice.getDroppedDims();
    SmallVector<AffineExpr> src;
    unsigned next = 0;
    for (auto [j, off] : llvm::enumerate(slice.getStaticOffsets())) {
      int64_t stride = slice.getStaticStrides()[j];
      if (ShapedType::isDynamic(off) || ShapedType::isDynamic(stride))
        return load(t, idx);
      if (dropped.test(j))
        src.push_back(getAffineConstantExpr(off, ctx));
      else
        src.push_back(idx[next++] * stride + off);
    }
    return tensorAtImpl(slice.getSource(), src, trail);
  }
  if (auto cast = dyn_cast<tensor::CastOp>(def))
    return tensorAtImpl(cast.getSource(), idx, trail);
  if (isa<tensor::EmptyOp>(def))
    return poison(tt.getElementType());
  DenseElementsAttr dense;
  if (matchPattern(t, m_Constant(&dense)) && dense.isSplat())
    return constant(cast<TypedAttr>(dense.getSplatValue<Attribute>()));
  if (auto lop = dyn_cast<linalg::LinalgOp>(def);
      lop && lop.hasPureTensorSemantics()) {
    unsigned r = cast<OpResult>(t).getResultNumber();
    if (std::optional<unsigned> in = viewInput(lop, r)) {
      AffineMap out = lop.getIndexingMapMatchingResult(lop->getResult(r));
      SmallVector<AffineExpr> loops(lop.getNumLoops());
      for (unsigned i = 0; i < out.getNumResults(); ++i)
        if (auto d = dyn_cast<AffineDimExpr>(out.getResult(i)))
          loops[d.getPosition()] = idx[i];
      OpOperand *operand = lop.getDpsInputOperand(*in);
      if (!isa<RankedTensorType>(operand->get().getType()))
        return scalar(operand->get());
      return tensorAtImpl(operand->get(),
                          compose(lop.getMatchingIndexingMap(operand), loops),
                          trail);
    }
  }
  return load(t, idx);
}

Expr *ExprContext::evalResult(linalg::LinalgOp lop, unsigned r,
                              ArrayRef<AffineExpr> idx) {
  if (!lop.hasPureTensorSemantics() || !lop.getBlock())
    return nullptr;
  AffineMap out = lop.getIndexingMapMatchingResult(lop->getResult(r));
  if (!out.isProjectedPermutation(/*allowZeroInResults=*/true) ||
      out.getNumResults() != static_cast<unsigned>(idx.size()))
    return nullptr;
  unsigned numLoops = lop.getNumLoops();
  SmallVector<AffineExpr> loops(numLoops);
  for (unsigned i = 0; i < out.getNumResults(); ++i)
    if (auto d = dyn_cast<AffineDimExpr>(out.getResult(i)))
      loops[d.getPosition()] = idx[i];
  SmallVector<utils::IteratorType> iters = lop.getIteratorTypesArray();
  SmallVector<unsigned> free;
  for (unsigned l = 0; l < numLoops; ++l)
    if (!loops[l]) {
      if (iters[l] != utils::IteratorType::reduction)
        return nullptr;
      free.push_back(l);
    }
  Block *body = lop.getBlock();
  unsigned numInputs = lop.getNumDpsInputs();
  bool reduction = !free.empty();
  Type type = cast<ShapedType>(lop->getResult(r).getType()).getElementType();

  // The body's values as expressions of `loops`.
  auto evalBody = [&](Value y) -> Expr * {
    llvm::DenseMap<Value, Expr *> memo;
    std::function<Expr *(Value)> ev = [&](Value v) -> Expr * {
      if (Expr *e = memo.lookup(v))
        return e;
      Expr *res = nullptr;
      if (auto arg = dyn_cast<BlockArgument>(v); arg && arg.getOwner() == body) {
        unsigned i = arg.getArgNumber();
        if (i < numInputs) {
          OpOperand *operand = lop.getDpsInputOperand(i);
          Value in = operand->get();
          res = isa<RankedTensorType>(in.getType())
                    ? tensorAt(in, compose(lop.getMatchingIndexingMap(operand),
                                           loops))
                    : scalar(in);
        } else if (reduction) {
          res = acc(i - numInputs, v.getType());
        } else {
          OpOperand *init = lop.getDpsInitOperand(i - numInputs);
          res = tensorAt(init->get(),
                         compose(lop.getMatchingIndexingMap(init), loops));
        }
      } else if (Operation *d = v.getDefiningOp();
                 d && lop->isProperAncestor(d)) {
        if (auto ix = dyn_cast<linalg::IndexOp>(d)) {
          res = index(simplify(loops[ix.getDim()]));
        } else if (auto c = dyn_cast<arith::ConstantOp>(d)) {
          res = scalar(c.getResult());
        } else if (d->getNumResults() == 1 && d->getNumRegions() == 0 &&
                   (isMemoryEffectFree(d) || isa<tensor::ExtractOp>(d))) {
          SmallVector<Expr *> ops;
          for (Value o : d->getOperands()) {
            Expr *e = ev(o);
            if (!e)
              return nullptr;
            ops.push_back(e);
          }
          res = op(d->getName().getStringRef(), v.getType(), ops,
                   d->getAttrDictionary());
        }
      } else {
        res = scalar(v);
      }
      if (res)
        memo[v] = res;
      return res;
    };
    return ev(y);
  };

  Value y = body->getTerminator()->getOperand(r);
  if (!reduction)
    return evalBody(y);

  return reduceNode(lop, r, idx, type, [&](Expr &node) -> Expr * {
    for (unsigned l : free) {
      unsigned d = newDim(lop.getStaticLoopRanges()[l]);
      loops[l] = dim(d);
      node.dims.push_back(d);
    }
    // yield comb(x, acc) (or comb(acc, x)) for this result's accumulator.
    Operation *comb = y.getDefiningOp();
    if (!comb || !lop->isProperAncestor(comb) || comb->getNumOperands() != 2)
      return nullptr;
    BlockArgument accArg = body->getArgument(numInputs + r);
    Value x;
    if (comb->getOperand(0) == accArg)
      x = comb->getOperand(1);
    else if (comb->getOperand(1) == accArg)
      x = comb->getOperand(0);
    else
      return nullptr;
    Expr *contribution = evalBody(x);
    if (!contribution || contribution->hasAcc)
      return nullptr;
    OpOperand *init = lop.getDpsInitOperand(r);
    Expr *initExpr = tensorAt(init->get(), idx);
    node.name = StringAttr::get(ctx, comb->getName().getStringRef());
    node.operands = {initExpr, contribution};
    return &node;
  });
}

/// linalg.softmax as max / exp / sum / div over its dimension. The max (tag
/// 0) and the sum (tag 1) are keyed by the index with the softmax dimension
/// at 0 (they do not depend on it).
Expr *ExprContext::softmaxPart(linalg::SoftmaxOp sm, unsigned tag,
                               ArrayRef<AffineExpr> idx) {
  unsigned d = sm.getDimension();
  auto inType = cast<ShapedType>(sm.getInput().getType());
  Type t = inType.getElementType();
  SmallVector<AffineExpr> key(idx);
  key[d] = getAffineConstantExpr(0, ctx);
  return reduceNode(sm, tag, key, t, [&](Expr &node) -> Expr * {
    unsigned r = newDim(inType.getDimSize(d));
    node.dims = {r};
    SmallVector<AffineExpr> at(key);
    at[d] = dim(r);
    Expr *x = tensorAt(sm.getInput(), at);
    if (tag == 0) {
      node.name = StringAttr::get(ctx, "arith.maximumf");
      node.operands = {
          constant(FloatAttr::get(t, -std::numeric_limits<double>::infinity())),
          x};
    } else {
      Expr *m = softmaxPart(sm, 0, key);
      node.name = StringAttr::get(ctx, "arith.addf");
      node.operands = {constant(FloatAttr::get(t, 0.0)),
                       op("math.exp", t, {op("arith.subf", t, {x, m})})};
    }
    return &node;
  });
}

Expr *ExprContext::softmaxAt(linalg::SoftmaxOp sm, ArrayRef<AffineExpr> idx) {
  Type t = cast<ShapedType>(sm.getInput().getType()).getElementType();
  Expr *x = tensorAt(sm.getInput(), idx);
  Expr *e = op("math.exp", t, {op("arith.subf", t, {x, softmaxPart(sm, 0, idx)})});
  return op("arith.divf", t, {e, softmaxPart(sm, 1, idx)});
}

Expr *ExprContext::rebuildReduce(Expr *r, ArrayRef<AffineExpr> key) {
  if (auto lop = dyn_cast<linalg::LinalgOp>(r->origin))
    return evalResult(lop, r->tag, key);
  if (auto sm = dyn_cast<linalg::SoftmaxOp>(r->origin))
    return softmaxPart(sm, r->tag, key);
  return nullptr;
}

Expr *ExprContext::peel(Expr *e) {
  if (!e || e->kind != Kind::Load)
    return e;
  if (Expr *p = peelMemo.lookup(e))
    return p;
  Expr *res = e;
  Operation *def = e->value.getDefiningOp();
  if (auto lop = dyn_cast_or_null<linalg::LinalgOp>(def)) {
    if (Expr *x = evalResult(
            lop, cast<OpResult>(e->value).getResultNumber(), e->idx))
      res = x;
  } else if (auto sm = dyn_cast_or_null<linalg::SoftmaxOp>(def)) {
    res = softmaxAt(sm, e->idx);
  } else if (def && def->hasTrait<OpTrait::Elementwise>() &&
             def->getNumResults() == 1 && def->getNumRegions() == 0 &&
             isMemoryEffectFree(def)) {
    // arith / math on whole tensors.
    SmallVector<Expr *> ops;
    for (Value o : def->getOperands())
      ops.push_back(isa<RankedTensorType>(o.getType()) ? tensorAt(o, e->idx)
                                                        : scalar(o));
    res = op(def->getName().getStringRef(), e->type, ops,
             def->getAttrDictionary());
  }
  peelMemo[e] = res;
  return res;
}

Expr *ExprContext::head(Expr *e) {
  for (Expr *p = peel(e); p != e; p = peel(e))
    e = p;
  return e;
}

Expr *ExprContext::canon(Expr *e) {
  if (!e)
    return e;
  if (Expr *c = canonMemo.lookup(e))
    return c;
  Expr *res = e;
  if (e->kind == Kind::Load) {
    Expr *p = peel(e);
    if (p != e)
      res = canon(p);
  } else if (e->kind == Kind::Op) {
    SmallVector<Expr *> ops;
    for (Expr *o : e->operands)
      ops.push_back(canon(o));
    res = op(e->name.getValue(), e->type, ops,
             dyn_cast_or_null<DictionaryAttr>(e->attr));
  }
  canonMemo[e] = res;
  return res;
}

Expr *ExprContext::inlineElementwise(Expr *e) {
  if (Expr *c = flatMemo.lookup(e))
    return c;
  Expr *res = e;
  if (e->kind == Kind::Load) {
    Expr *p = peel(e);
    if (p != e && p->kind != Kind::Reduce)
      res = inlineElementwise(p);
  } else if (e->kind == Kind::Op) {
    SmallVector<Expr *> ops;
    for (Expr *o : e->operands)
      ops.push_back(inlineElementwise(o));
    res = op(e->name.getValue(), e->type, ops,
             dyn_cast_or_null<DictionaryAttr>(e->attr));
  }
  flatMemo[e] = res;
  return res;
}

Expr *ExprContext::substitute(Expr *e,
                              const llvm::DenseMap<unsigned, AffineExpr> &m) {
  llvm::DenseMap<AffineExpr, AffineExpr> map;
  for (auto [d, to] : m)
    map[dim(d)] = to;
  auto sub = [&](AffineExpr x) { return simplify(x.replace(map)); };
  llvm::DenseMap<Expr *, Expr *> memo;
  std::function<Expr *(Expr *)> rec = [&](Expr *x) -> Expr * {
    if (Expr *y = memo.lookup(x))
      return y;
    Expr *res = x;
    switch (x->kind) {
    case Kind::Load: {
      SmallVector<AffineExpr> idx;
      for (AffineExpr i : x->idx)
        idx.push_back(sub(i));
      res = tensorAt(x->value, idx);
      break;
    }
    case Kind::Index:
      res = index(sub(x->idx[0]));
      break;
    case Kind::Op: {
      SmallVector<Expr *> ops;
      for (Expr *o : x->operands)
        ops.push_back(rec(o));
      res = op(x->name.getValue(), x->type, ops,
               dyn_cast_or_null<DictionaryAttr>(x->attr));
      break;
    }
    case Kind::Reduce: {
      SmallVector<AffineExpr> key;
      for (AffineExpr i : x->idx)
        key.push_back(sub(i));
      if (Expr *y = rebuildReduce(x, key))
        res = y;
      break;
    }
    default:
      break;
    }
    memo[x] = res;
    return res;
  };
  return rec(e);
}

void ExprContext::dimsOf(Expr *e, SmallVectorImpl<unsigned> &out) {
  llvm::SmallBitVector seen(numDims());
  llvm::DenseSet<Expr *> visited;
  std::function<void(Expr *)> rec = [&](Expr *x) {
    if (!visited.insert(x).second)
      return;
    for (AffineExpr i : x->idx)
      i.walk([&](AffineExpr s) {
        if (auto d = dyn_cast<AffineDimExpr>(s))
          seen.set(d.getPosition());
      });
    if (x->kind != Kind::Reduce)
      for (Expr *o : x->operands)
        rec(o);
  };
  rec(e);
  for (int d = seen.find_first(); d >= 0; d = seen.find_next(d))
    out.push_back(d);
}

bool ExprContext::dependsOn(Expr *e, unsigned d) {
  SmallVector<unsigned> ds;
  dimsOf(e, ds);
  return llvm::is_contained(ds, d);
}

bool ExprContext::contains(Expr *e, Expr *sub) {
  e = canon(e);
  sub = canon(sub);
  llvm::DenseSet<Expr *> visited;
  std::function<bool(Expr *)> rec = [&](Expr *x) -> bool {
    if (x == sub)
      return true;
    if (!visited.insert(x).second)
      return false;
    for (Expr *o : x->operands)
      if (rec(canon(o)))
        return true;
    return false;
  };
  return rec(e);
}

void ExprContext::print(Expr *e, llvm::raw_ostream &os, int depth) {
  if (!e) {
    os << "<null>";
    return;
  }
  auto idx = [&](ArrayRef<AffineExpr> ix) {
    os << "[";
    llvm::interleaveComma(ix, os, [&](AffineExpr x) { os << x; });
    os << "]";
  };
  switch (e->kind) {
  case Kind::Load:
    os << "load(";
    if (Operation *d = e->value.getDefiningOp())
      os << d->getName();
    else
      os << "arg";
    os << ")";
    idx(e->idx);
    return;
  case Kind::Index:
    os << "index(" << e->idx[0] << ")";
    return;
  case Kind::Const:
    os << e->attr;
    return;
  case Kind::External:
    os << "ext";
    return;
  case Kind::Acc:
    os << "acc" << e->tag;
    return;
  case Kind::Poison:
    os << "poison";
    return;
  case Kind::Reduce:
    os << "reduce<" << e->name.getValue() << " over";
    for (unsigned d : e->dims)
      os << " d" << d;
    os << ">";
    idx(e->idx);
    if (depth > 0) {
      os << "{";
      print(e->contribution(), os, depth - 1);
      os << "}";
    }
    return;
  case Kind::Op:
    os << e->name.getValue().drop_front(e->name.getValue().find('.') + 1);
    if (depth <= 0) {
      os << "(..)";
      return;
    }
    os << "(";
    llvm::interleaveComma(e->operands, os,
                          [&](Expr *o) { print(o, os, depth - 1); });
    os << ")";
    return;
  }
}
