//===- AttentionMatch.cpp - attention in the scalar-expression form -------===//

#include "AttentionMatch.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/AffineExprVisitor.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace kvmerge::raise;

using Kind = Expr::Kind;

namespace {

std::string formatScale(double v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << v;
  return s;
}

//===----------------------------------------------------------------------===//
// Small predicates
//===----------------------------------------------------------------------===//

bool isCast(Expr *e) {
  return e->isOp("arith.extf") || e->isOp("arith.truncf");
}

/// `e` in head form with float casts looked through.
Expr *stripCasts(ExprContext &cx, Expr *e) {
  e = cx.head(e);
  while (isCast(e))
    e = cx.head(e->operand(0));
  return e;
}

std::optional<double> constOf(ExprContext &cx, Expr *e) {
  return stripCasts(cx, e)->constant();
}

bool isMaskingValue(std::optional<double> c) { return c && *c <= -1e4; }

/// A reduction of one axis that sums products, from zero: Q . K^T or P . V.
bool isContraction(ExprContext &cx, Expr *e) {
  if (!e || e->kind != Kind::Reduce || e->name.getValue() != "arith.addf" ||
      e->dims.size() != 1)
    return false;
  std::optional<double> init = constOf(cx, e->init());
  return init && *init == 0.0 &&
         stripCasts(cx, e->contribution())->isOp("arith.mulf");
}

/// Depth-first search over the canonical form of `e`, into reductions but
/// not past contractions (which would walk back through the whole model).
bool anyNode(ExprContext &cx, Expr *e, function_ref<bool(Expr *)> pred) {
  llvm::DenseSet<Expr *> seen;
  std::function<bool(Expr *)> rec = [&](Expr *x) -> bool {
    x = cx.canon(x);
    if (!seen.insert(x).second)
      return false;
    if (pred(x))
      return true;
    if (isContraction(cx, x))
      return false;
    for (Expr *o : x->operands)
      if (rec(o))
        return true;
    return false;
  };
  return rec(e);
}

bool containsContraction(ExprContext &cx, Expr *e) {
  return anyNode(cx, e, [&](Expr *x) { return isContraction(cx, x); });
}

/// Follows constant factors and casts from a contraction operand to the
/// tensors it reads (multiplying `coef`): `loads` gets every tensor on the
/// way after the last constant factor, outermost first (the same values up
/// to casts). False if the operand is computed in place.
bool factor(ExprContext &cx, Expr *e, double &coef, bool allowScale,
            SmallVectorImpl<Expr *> &loads, Expr *&value) {
  loads.clear();
  while (true) {
    value = e;
    if (e->kind == Kind::Load)
      loads.push_back(e);
    Expr *x = e->kind == Kind::Load ? cx.peel(e) : e;
    if (isCast(x)) {
      e = x->operand(0);
      continue;
    }
    bool mul = x->isOp("arith.mulf"), div = x->isOp("arith.divf");
    if (allowScale && (mul || div)) {
      std::optional<double> rhs = constOf(cx, x->operand(1));
      std::optional<double> lhs =
          mul ? constOf(cx, x->operand(0)) : std::nullopt;
      if (rhs && *rhs != 0.0) {
        coef = mul ? coef * *rhs : coef / *rhs;
        e = x->operand(0);
        loads.clear();
        continue;
      }
      if (lhs) {
        coef *= *lhs;
        e = x->operand(1);
        loads.clear();
        continue;
      }
    }
    return !loads.empty() && e->kind == Kind::Load;
  }
}

/// Whether `e` can be recomputed in one generic body (RaiseAttention's
/// materialization): no reduction or undefined value left after inlining
/// the elementwise producers.
bool emittable(ExprContext &cx, Expr *e) {
  llvm::DenseSet<Expr *> seen;
  std::function<bool(Expr *)> rec = [&](Expr *x) -> bool {
    if (!seen.insert(x).second)
      return true;
    if (x->kind == Kind::Reduce || x->kind == Kind::Poison ||
        x->kind == Kind::Acc)
      return false;
    return llvm::all_of(x->operands, rec);
  };
  return rec(cx.inlineElementwise(e));
}

//===----------------------------------------------------------------------===//
// Softmax and logits
//===----------------------------------------------------------------------===//

/// P = E / sum_n E with E = exp(Y): returns Y.
FailureOr<Expr *> matchSoftmax(ExprContext &cx, Expr *p, unsigned n,
                               bool &safe, std::string &why) {
  Expr *x = stripCasts(cx, p);
  if (x->isOp("arith.select")) {
    // torch's safe softmax: select(all_n(logits == -inf), 0, P).
    Expr *cond = cx.head(x->operand(0));
    std::optional<double> zero = constOf(cx, x->operand(1));
    if (cond->kind != Kind::Reduce || cond->name.getValue() != "arith.andi" ||
        !zero || *zero != 0.0) {
      why = "probabilities are selected by something other than a "
            "fully-masked-row test";
      return failure();
    }
    safe = true;
    x = stripCasts(cx, x->operand(2));
  }
  Expr *num = nullptr, *den = nullptr;
  if (x->isOp("arith.divf")) {
    num = x->operand(0);
    den = x->operand(1);
  } else if (x->isOp("arith.mulf")) {
    for (auto [a, b] : {std::pair{x->operand(0), x->operand(1)},
                        std::pair{x->operand(1), x->operand(0)}}) {
      Expr *r = stripCasts(cx, b);
      std::optional<double> one =
          r->isOp("arith.divf") ? constOf(cx, r->operand(0)) : std::nullopt;
      if (one && *one == 1.0) {
        num = a;
        den = r->operand(1);
      }
    }
  }
  if (!num) {
    if (getenv("KVMERGE_DEBUG_RAISE")) {
      cx.print(x, llvm::errs());
      llvm::errs() << "\n";
    }
    why = "probabilities are not normalized by a division";
    return failure();
  }
  Expr *d = stripCasts(cx, den);
  std::optional<double> init =
      d->kind == Kind::Reduce ? constOf(cx, d->init()) : std::nullopt;
  if (d->kind != Kind::Reduce || d->name.getValue() != "arith.addf" ||
      d->dims.size() != 1 || !init || *init != 0.0) {
    why = "softmax is not normalized by a sum over one axis";
    return failure();
  }
  Expr *summed = cx.substitute(d->contribution(), {{d->dims[0], cx.dim(n)}});
  if (cx.canon(stripCasts(cx, summed)) != cx.canon(stripCasts(cx, num))) {
    why = "softmax divides by a sum of other values or over another axis "
          "than the one P . V contracts";
    return failure();
  }
  Expr *e = stripCasts(cx, num);
  if (!e->isOp("math.exp")) {
    why = "softmax numerator is not an exponential";
    return failure();
  }
  return e->operand(0);
}

/// logits = alpha * S + sum(coef * bias): S the Q . K^T contraction.
struct Logit {
  double alpha = 0.0;
  Expr *s = nullptr;
  SmallVector<std::pair<Expr *, double>> bias;
};

LogicalResult decompose(ExprContext &cx, Expr *y, double coef, unsigned n,
                        bool top, Logit &out, std::string &why) {
  Expr *x = cx.head(y);
  // Terms that do not depend on the key (the row max) cancel in softmax.
  if (top && !cx.dependsOn(x, n))
    return success();
  auto rec = [&](Expr *e, double c, bool t = true) {
    return decompose(cx, e, c, n, top && t, out, why);
  };
  if (isCast(x))
    return rec(x->operand(0), coef);
  if (x->isOp("arith.addf"))
    return success(succeeded(rec(x->operand(0), coef)) &&
                   succeeded(rec(x->operand(1), coef)));
  if (x->isOp("arith.subf"))
    return success(succeeded(rec(x->operand(0), coef)) &&
                   succeeded(rec(x->operand(1), -coef)));
  if (x->isOp("arith.negf"))
    return rec(x->operand(0), -coef);
  if (x->isOp("arith.mulf") || x->isOp("arith.divf")) {
    bool mul = x->isOp("arith.mulf");
    std::optional<double> rhs = constOf(cx, x->operand(1));
    std::optional<double> lhs = mul ? constOf(cx, x->operand(0)) : std::nullopt;
    if (rhs && *rhs != 0.0)
      return rec(x->operand(0), mul ? coef * *rhs : coef / *rhs);
    if (lhs)
      return rec(x->operand(1), coef * *lhs);
  }
  if (isContraction(cx, x)) {
    if (out.s && out.s != x) {
      why = "logits add two different contractions";
      return failure();
    }
    out.s = x;
    out.alpha += coef;
    return success();
  }
  if (x->isOp("arith.select")) {
    // masked_fill: select(c, NEG, logits) = logits + select(c, NEG, 0) in
    // floating point when NEG <= -1e4 is far below every logit.
    for (unsigned keep : {1u, 2u}) {
      unsigned fill = 3 - keep;
      std::optional<double> neg = constOf(cx, x->operand(fill));
      if (!isMaskingValue(neg) || !containsContraction(cx, x->operand(keep)))
        continue;
      if (coef <= 0.0) {
        why = "a masked fill is scaled by a non-positive factor";
        return failure();
      }
      Type t = stripCasts(cx, x->operand(fill))->type;
      Expr *zero = cx.constant(FloatAttr::get(t, 0.0));
      SmallVector<Expr *> ops = {x->operand(0), zero, zero};
      ops[fill] = x->operand(fill);
      out.bias.push_back({cx.op("arith.select", t, ops), coef});
      return rec(x->operand(keep), coef, /*t=*/false);
    }
  }
  if (x->kind == Kind::Reduce && x->name.getValue() == "arith.addf" &&
      stripCasts(cx, x->contribution())->isOp("arith.mulf") &&
      x->dims.size() == 1) {
    why = "Q . K^T accumulates into a non-zero initial value";
    return failure();
  }
  if (!containsContraction(cx, x)) {
    out.bias.push_back({x, coef});
    return success();
  }
  if (x->kind == Kind::Reduce) {
    why = "logits subtract a reduction of the scores that varies along the "
          "key axis (a softmax subtracts the row maximum)";
    return failure();
  }
  if (x->isOp("arith.mulf") || x->isOp("arith.divf")) {
    why = "logits scale Q . K^T by a value that is not a constant";
    return failure();
  }
  why = "logits are not an affine function of Q . K^T (they apply '" +
        (x->kind == Kind::Op ? x->name.getValue().str() : std::string("a reduction")) +
        "' to it)";
  return failure();
}

//===----------------------------------------------------------------------===//
// Masks: causal proofs on index arithmetic
//===----------------------------------------------------------------------===//

/// sum(coef[d] * d) + cst over loop dimensions.
struct Lin {
  llvm::DenseMap<unsigned, int64_t> coef;
  int64_t cst = 0;
  Lin scaled(int64_t s) const {
    Lin r;
    for (auto [d, c] : coef)
      r.coef[d] = c * s;
    r.cst = cst * s;
    return r;
  }
  Lin plus(const Lin &o) const {
    Lin r = *this;
    for (auto [d, c] : o.coef)
      r.coef[d] += c;
    r.cst += o.cst;
    return r;
  }
};

std::optional<Lin> linearOfAffine(AffineExpr e) {
  Lin r;
  if (auto c = dyn_cast<AffineConstantExpr>(e)) {
    r.cst = c.getValue();
    return r;
  }
  if (auto d = dyn_cast<AffineDimExpr>(e)) {
    r.coef[d.getPosition()] = 1;
    return r;
  }
  auto bin = dyn_cast<AffineBinaryOpExpr>(e);
  if (!bin)
    return std::nullopt;
  std::optional<Lin> a = linearOfAffine(bin.getLHS());
  std::optional<Lin> b = linearOfAffine(bin.getRHS());
  if (!a || !b)
    return std::nullopt;
  if (e.getKind() == AffineExprKind::Add)
    return a->plus(*b);
  if (e.getKind() == AffineExprKind::Mul) {
    if (b->coef.empty())
      return a->scaled(b->cst);
    if (a->coef.empty())
      return b->scaled(a->cst);
  }
  return std::nullopt;
}

/// An integer expression as a linear function of the loops.
std::optional<Lin> linearInt(ExprContext &cx, Expr *e) {
  e = cx.head(e);
  if (e->kind == Kind::Index)
    return linearOfAffine(e->idx[0]);
  if (e->kind == Kind::Const && e->type.isIntOrIndex()) {
    Lin r;
    r.cst = static_cast<int64_t>(*e->constant());
    return r;
  }
  if (e->kind != Kind::Op)
    return std::nullopt;
  StringRef name = e->name.getValue();
  if (name == "arith.index_cast" || name == "arith.index_castui" ||
      name == "arith.extsi" || name == "arith.extui" || name == "arith.trunci")
    return linearInt(cx, e->operand(0));
  if (name == "arith.addi" || name == "arith.subi") {
    std::optional<Lin> a = linearInt(cx, e->operand(0));
    std::optional<Lin> b = linearInt(cx, e->operand(1));
    if (!a || !b)
      return std::nullopt;
    return a->plus(name == "arith.addi" ? *b : b->scaled(-1));
  }
  if (name == "arith.muli") {
    std::optional<Lin> a = linearInt(cx, e->operand(0));
    std::optional<Lin> b = linearInt(cx, e->operand(1));
    if (a && b && b->coef.empty())
      return a->scaled(b->cst);
    if (a && b && a->coef.empty())
      return b->scaled(a->cst);
  }
  return std::nullopt;
}

bool nonNegative(ExprContext &cx, const Lin &l) {
  int64_t lo = l.cst;
  for (auto [d, c] : l.coef) {
    int64_t ext = cx.extent(d);
    if (ShapedType::isDynamic(ext))
      return false;
    lo += std::min<int64_t>(0, c * (ext - 1));
  }
  return lo >= 0;
}

/// The set where boolean `cond` holds, as {L >= 0}.
std::optional<Lin> halfPlane(ExprContext &cx, Expr *cond, bool negate) {
  cond = cx.head(cond);
  if (cond->kind != Kind::Op)
    return std::nullopt;
  StringRef name = cond->name.getValue();
  auto isTrue = [&](Expr *e) {
    std::optional<double> c = cx.head(e)->constant();
    return c && *c != 0.0;
  };
  auto isFalse = [&](Expr *e) {
    std::optional<double> c = cx.head(e)->constant();
    return c && *c == 0.0;
  };
  if (name == "arith.xori") {
    if (isTrue(cond->operand(1)))
      return halfPlane(cx, cond->operand(0), !negate);
    if (isTrue(cond->operand(0)))
      return halfPlane(cx, cond->operand(1), !negate);
    return std::nullopt;
  }
  if (name == "arith.andi" || name == "arith.ori") {
    bool andi = name == "arith.andi";
    for (auto [a, b] : {std::pair{cond->operand(0), cond->operand(1)},
                        std::pair{cond->operand(1), cond->operand(0)}})
      if (andi ? isTrue(b) : isFalse(b))
        return halfPlane(cx, a, negate);
    return std::nullopt;
  }
  if (name != "arith.cmpi")
    return std::nullopt;
  auto attrs = dyn_cast_or_null<DictionaryAttr>(cond->attr);
  auto predAttr =
      attrs ? dyn_cast_or_null<arith::CmpIPredicateAttr>(attrs.get("predicate"))
            : arith::CmpIPredicateAttr();
  std::optional<Lin> a = linearInt(cx, cond->operand(0));
  std::optional<Lin> b = linearInt(cx, cond->operand(1));
  if (!predAttr || !a || !b)
    return std::nullopt;
  using P = arith::CmpIPredicate;
  P pred = predAttr.getValue();
  bool isUnsigned = pred == P::ule || pred == P::ult || pred == P::uge ||
                    pred == P::ugt;
  if (isUnsigned && !(nonNegative(cx, *a) && nonNegative(cx, *b)))
    return std::nullopt;
  Lin ge; // the condition as ge >= 0
  switch (pred) {
  case P::sle:
  case P::ule:
    ge = b->plus(a->scaled(-1));
    break;
  case P::slt:
  case P::ult:
    ge = b->plus(a->scaled(-1));
    ge.cst -= 1;
    break;
  case P::sge:
  case P::uge:
    ge = a->plus(b->scaled(-1));
    break;
  case P::sgt:
  case P::ugt:
    ge = a->plus(b->scaled(-1));
    ge.cst -= 1;
    break;
  default:
    return std::nullopt;
  }
  if (negate) {
    ge = ge.scaled(-1);
    ge.cst -= 1;
  }
  return ge;
}

int64_t floorDiv(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/// The value of `e` at concrete loop indices, for masks that are constants
/// or index arithmetic the linear proof does not cover (dense constant
/// masks, clamps, ...). Null if `e` reads anything else.
class Concrete {
public:
  Concrete(ExprContext &cx) : cx(cx) {}
  llvm::DenseMap<unsigned, int64_t> at;

  std::optional<int64_t> affine(AffineExpr e) {
    if (auto c = dyn_cast<AffineConstantExpr>(e))
      return c.getValue();
    if (auto d = dyn_cast<AffineDimExpr>(e)) {
      auto it = at.find(d.getPosition());
      if (it == at.end())
        return std::nullopt;
      return it->second;
    }
    auto bin = cast<AffineBinaryOpExpr>(e);
    auto l = affine(bin.getLHS()), r = affine(bin.getRHS());
    if (!l || !r)
      return std::nullopt;
    switch (e.getKind()) {
    case AffineExprKind::Add:
      return *l + *r;
    case AffineExprKind::Mul:
      return *l * *r;
    case AffineExprKind::FloorDiv:
      return *r ? std::optional<int64_t>(floorDiv(*l, *r)) : std::nullopt;
    case AffineExprKind::Mod:
      return *r ? std::optional<int64_t>(*l - floorDiv(*l, *r) * *r)
                : std::nullopt;
    default:
      return std::nullopt;
    }
  }

  std::optional<double> eval(Expr *e) {
    e = cx.head(e);
    switch (e->kind) {
    case Kind::Const:
      return e->constant();
    case Kind::Index: {
      auto v = affine(e->idx[0]);
      return v ? std::optional<double>(*v) : std::nullopt;
    }
    case Kind::Load: {
      DenseElementsAttr dense;
      if (!matchPattern(e->value, m_Constant(&dense)))
        return std::nullopt;
      auto type = cast<RankedTensorType>(dense.getType());
      int64_t flat = 0;
      for (auto [i, x] : llvm::enumerate(e->idx)) {
        auto v = affine(x);
        if (!v || *v < 0 || *v >= type.getDimSize(i))
          return std::nullopt;
        flat = flat * type.getDimSize(i) + *v;
      }
      Attribute a = dense.getValues<Attribute>()[flat];
      if (auto f = dyn_cast<FloatAttr>(a))
        return f.getValueAsDouble();
      if (auto i = dyn_cast<IntegerAttr>(a))
        return static_cast<double>(i.getValue().getSExtValue());
      return std::nullopt;
    }
    case Kind::Op:
      break;
    default:
      return std::nullopt;
    }
    StringRef n = e->name.getValue();
    SmallVector<double> v;
    for (Expr *o : e->operands) {
      auto x = eval(o);
      if (!x)
        return std::nullopt;
      v.push_back(*x);
    }
    auto attrs = dyn_cast_or_null<DictionaryAttr>(e->attr);
    if (n == "arith.addf" || n == "arith.addi")
      return v[0] + v[1];
    if (n == "arith.subf" || n == "arith.subi")
      return v[0] - v[1];
    if (n == "arith.mulf" || n == "arith.muli")
      return v[0] * v[1];
    if (n == "arith.negf")
      return -v[0];
    if (n == "arith.maximumf" || n == "arith.maxnumf" || n == "arith.maxsi")
      return std::max(v[0], v[1]);
    if (n == "arith.minimumf" || n == "arith.minnumf" || n == "arith.minsi")
      return std::min(v[0], v[1]);
    if (n == "arith.select")
      return v[0] != 0.0 ? v[1] : v[2];
    if (n == "arith.andi")
      return static_cast<double>((v[0] != 0.0) && (v[1] != 0.0));
    if (n == "arith.ori")
      return static_cast<double>((v[0] != 0.0) || (v[1] != 0.0));
    if (n == "arith.xori" && e->type.isInteger(1))
      return static_cast<double>((v[0] != 0.0) != (v[1] != 0.0));
    if (n == "arith.index_cast" || n == "arith.index_castui" ||
        n == "arith.extsi" || n == "arith.extui" || n == "arith.sitofp" ||
        n == "arith.uitofp" || n == "arith.extf" || n == "arith.truncf" ||
        n == "arith.trunci")
      return v[0];
    if (n == "arith.cmpi" && attrs) {
      auto p = dyn_cast_or_null<arith::CmpIPredicateAttr>(attrs.get("predicate"));
      if (!p)
        return std::nullopt;
      using P = arith::CmpIPredicate;
      double a = v[0], b = v[1];
      switch (p.getValue()) {
      case P::eq: return a == b;
      case P::ne: return a != b;
      case P::slt: case P::ult: return a < b;
      case P::sle: case P::ule: return a <= b;
      case P::sgt: case P::ugt: return a > b;
      case P::sge: case P::uge: return a >= b;
      }
    }
    if (n == "arith.cmpf" && attrs) {
      auto p = dyn_cast_or_null<arith::CmpFPredicateAttr>(attrs.get("predicate"));
      if (!p)
        return std::nullopt;
      using P = arith::CmpFPredicate;
      double a = v[0], b = v[1];
      switch (p.getValue()) {
      case P::OEQ: case P::UEQ: return a == b;
      case P::ONE: case P::UNE: return a != b;
      case P::OLT: case P::ULT: return a < b;
      case P::OLE: case P::ULE: return a <= b;
      case P::OGT: case P::UGT: return a > b;
      case P::OGE: case P::UGE: return a >= b;
      default: return std::nullopt;
      }
    }
    return std::nullopt;
  }

private:
  ExprContext &cx;
};

//===----------------------------------------------------------------------===//
// Operand layouts
//===----------------------------------------------------------------------===//

/// Reads `leaf` as [heads, token, feature]; fills `headOf` for every flat
/// query head (heads enumerated row-major over `heads`).
LogicalResult analyzeLeaf(ExprContext &cx, Leaf &leaf, StringRef what,
                          std::optional<unsigned> token,
                          std::optional<unsigned> feature,
                          ArrayRef<unsigned> heads, std::string &why) {
  Expr *l = leaf.load;
  auto type = cast<RankedTensorType>(l->value.getType());
  auto uses = [](AffineExpr e, unsigned d) {
    bool found = false;
    e.walk([&](AffineExpr s) {
      if (auto x = dyn_cast<AffineDimExpr>(s))
        found |= x.getPosition() == d;
    });
    return found;
  };
  for (auto [p, e] : llvm::enumerate(l->idx)) {
    if (token && e == cx.dim(*token) && leaf.tokenPosition < 0) {
      leaf.tokenPosition = p;
    } else if (feature && e == cx.dim(*feature) && leaf.featurePosition < 0) {
      leaf.featurePosition = p;
    } else if ((token && uses(e, *token)) || (feature && uses(e, *feature))) {
      why = (what + " is not read along plain token and feature axes (index " +
             std::to_string(p) + " mixes them)")
                .str();
      return failure();
    } else {
      leaf.headPositions.push_back(p);
    }
  }
  if ((token && cx.extent(*token) != 1 && leaf.tokenPosition < 0) ||
      (feature && cx.extent(*feature) != 1 && leaf.featurePosition < 0)) {
    why = (what + " has no plain token or feature axis").str();
    return failure();
  }
  for (int64_t p : leaf.headPositions) {
    int64_t size = type.getDimSize(p);
    if (ShapedType::isDynamic(size)) {
      why = (what + " has a dynamic head dimension").str();
      return failure();
    }
    leaf.numHeads *= size;
  }
  // Every flat query head's coordinates in this tensor.
  SmallVector<int64_t> ext;
  int64_t total = 1;
  for (unsigned h : heads) {
    ext.push_back(cx.extent(h));
    total *= ext.back();
  }
  if (total > (1 << 20)) {
    why = "too many attention heads to analyze";
    return failure();
  }
  for (int64_t j = 0; j < total; ++j) {
    llvm::DenseMap<AffineExpr, AffineExpr> at;
    int64_t rest = j;
    for (int64_t i = ext.size() - 1; i >= 0; --i) {
      at[cx.dim(heads[i])] = getAffineConstantExpr(rest % ext[i], cx.getContext());
      rest /= ext[i];
    }
    int64_t flat = 0;
    for (int64_t p : leaf.headPositions) {
      auto c = dyn_cast<AffineConstantExpr>(cx.simplify(l->idx[p].replace(at)));
      int64_t size = type.getDimSize(p);
      if (!c || c.getValue() < 0 || c.getValue() >= size) {
        why = (what + " is indexed by something other than the heads at "
                      "dimension " +
               std::to_string(p))
                  .str();
        return failure();
      }
      flat = flat * size + c.getValue();
    }
    leaf.headOf.push_back(flat);
  }
  return success();
}

/// The tensor to read a leaf from: among the views the Load was reached
/// through (from the reader back to the source), the first one laid out as
/// [heads, token, feature] with the fewest heads and the narrowest elements —
/// for V in Hugging Face IR the [B, Hkv, L, D] value cache, not the repeat_kv
/// copy, the projection or an upcast.
LogicalResult pickLeaf(ExprContext &cx, Leaf &leaf, ArrayRef<Expr *> chain,
                       StringRef what, std::optional<unsigned> token,
                       std::optional<unsigned> feature,
                       ArrayRef<unsigned> heads, std::string &why) {
  SmallVector<ExprContext::View> candidates;
  for (Expr *l : chain) {
    llvm::append_range(candidates, cx.viewsOf(l));
    candidates.push_back({l->value, l->idx});
  }
  std::optional<Leaf> best;
  for (auto &[t, idx] : candidates) {
    Leaf c;
    c.load = cx.load(t, idx);
    std::string w;
    if (failed(analyzeLeaf(cx, c, what, token, feature, heads, w))) {
      why = w;
      continue;
    }
    // Fewest heads (not a repeat_kv copy), then the narrowest element type
    // (the storage, not an upcast), then the closest to the attention.
    auto bits = [](const Leaf &l) {
      return cast<ShapedType>(l.load->value.getType())
          .getElementTypeBitWidth();
    };
    if (!best || c.numHeads < best->numHeads ||
        (c.numHeads == best->numHeads && bits(c) < bits(*best)))
      best = c;
  }
  if (!best)
    return failure();
  leaf = *best;
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

static Expr *resultOf(ExprContext &cx, linalg::LinalgOp op,
                      SmallVectorImpl<unsigned> &outDims) {
  if (op->getNumResults() != 1 || !op.hasPureTensorSemantics())
    return nullptr;
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  SmallVector<AffineExpr> idx;
  for (int64_t s : type.getShape()) {
    outDims.push_back(cx.newDim(s));
    idx.push_back(cx.dim(outDims.back()));
  }
  return cx.evalResult(op, 0, idx);
}

bool kvmerge::raise::looksLikeAttention(ExprContext &cx,
                                        linalg::LinalgOp op) {
  if (op.getNumReductionLoops() == 0)
    return false;
  SmallVector<unsigned> dims;
  Expr *r = resultOf(cx, op, dims);
  if (getenv("KVMERGE_DEBUG_RAISE")) {
    llvm::errs() << op->getName() << ": ";
    cx.print(r, llvm::errs(), 12);
    llvm::errs() << "\n";
  }
  if (!isContraction(cx, r))
    return false;
  Expr *body = stripCasts(cx, r->contribution());
  // Softmax-like: an exponential and a reduction (its normalization or
  // row maximum), not crossing another contraction. A gated MLP (exp in the
  // SiLU, no reduction) is not.
  auto softmaxLike = [&](Expr *factor) {
    return anyNode(cx, factor, [](Expr *y) { return y->isOp("math.exp"); }) &&
           anyNode(cx, factor, [&](Expr *y) {
             return y->kind == Kind::Reduce && !isContraction(cx, y);
           });
  };
  if (getenv("KVMERGE_DEBUG_RAISE")) {
    llvm::errs() << "  factor0: ";
    cx.print(cx.canon(body->operand(0)), llvm::errs(), 8);
    llvm::errs() << "\n";
  }
  return softmaxLike(body->operand(0)) || softmaxLike(body->operand(1));
}

std::string kvmerge::raise::opaqueAttention(ExprContext &cx,
                                            linalg::LinalgOp op) {
  if (op.getNumDpsInputs() != 2 || !linalg::isaContractionOpInterface(op))
    return "";
  auto isContractionOp = [](Operation *o) {
    auto l = dyn_cast<linalg::LinalgOp>(o);
    return l && l.getNumDpsInputs() == 2 &&
           linalg::isaContractionOpInterface(l);
  };
  // Backward over SSA from each input, stopping at contractions (Q . K^T,
  // projections): is there an exponential and a reduction in between?
  for (OpOperand *input : op.getDpsInputOperands()) {
    bool exp = false, reduction = false;
    SmallVector<Value> work{input->get()};
    llvm::SmallPtrSet<Operation *, 32> seen;
    while (!work.empty() && seen.size() < 256) {
      Operation *def = work.pop_back_val().getDefiningOp();
      if (!def || isContractionOp(def) || !seen.insert(def).second)
        continue;
      // Also the values a body reads from above (a generic that gathers
      // with tensor.extract, as torch-mlir's dynamic broadcasts do).
      def->walk([&](Operation *o) {
        exp |= o->getName().getStringRef() == "math.exp" ||
               isa<linalg::SoftmaxOp>(o);
        if (o != def)
          for (Value v : o->getOperands())
            if (!def->isAncestor(v.getParentRegion()->getParentOp()))
              work.push_back(v);
      });
      auto l = dyn_cast<linalg::LinalgOp>(def);
      reduction |= (l && l.getNumReductionLoops() > 0) ||
                   isa<linalg::SoftmaxOp>(def);
      llvm::append_range(work, def->getOperands());
    }
    if (!exp || !reduction)
      continue;
    // What the expression form stopped at: the op behind this factor.
    SmallVector<unsigned> dims;
    Expr *r = resultOf(cx, op, dims);
    std::string blocker;
    if (r && isContraction(cx, r)) {
      Expr *body = stripCasts(cx, r->contribution());
      unsigned which = input->getOperandNumber() == 0 ? 0 : 1;
      Expr *f = cx.head(stripCasts(cx, body->operand(which)));
      if (f->kind == Kind::Load && f->value.getDefiningOp())
        blocker = f->value.getDefiningOp()->getName().getStringRef().str();
      else if (anyNode(cx, f,
                       [](Expr *y) { return y->isOp("tensor.extract"); }))
        blocker = "tensor.extract";
    }
    bool dynamic = llvm::any_of(op->getOperandTypes(), [](Type t) {
      auto s = dyn_cast<ShapedType>(t);
      return s && !s.hasStaticShape();
    });
    std::string why = "a softmax reaches operand #" +
                      std::to_string(input->getOperandNumber()) +
                      " of this contraction";
    if (!blocker.empty())
      why += " through '" + blocker + "'";
    why += ", which the attention analysis does not look through";
    if (dynamic)
      why += " (the attention has dynamic shapes: kvmerge raises statically "
             "shaped attention; export with static shapes)";
    return why;
  }
  return "";
}

FailureOr<AttentionMatch>
kvmerge::raise::matchAttention(ExprContext &cx, linalg::LinalgOp op,
                               std::string &why) {
  AttentionMatch a;
  a.pv = op;
  Expr *r = resultOf(cx, op, a.outDims);
  if (!isContraction(cx, r)) {
    why = "P . V is not a sum of products over one axis from zero";
    return failure();
  }
  a.n = r->dims[0];
  Expr *body = stripCasts(cx, r->contribution());

  // Which factor is P: the one that is a softmax over n.
  Expr *y = nullptr, *vExpr = nullptr;
  std::string softmaxWhy;
  for (auto [p, v] : {std::pair{body->operand(0), body->operand(1)},
                      std::pair{body->operand(1), body->operand(0)}}) {
    bool safe = false;
    std::string w;
    FailureOr<Expr *> logits = matchSoftmax(cx, p, a.n, safe, w);
    if (succeeded(logits)) {
      y = *logits;
      vExpr = v;
      a.safeSoftmax = safe;
      break;
    }
    if (softmaxWhy.empty() || anyNode(cx, p, [](Expr *x) {
          return x->isOp("math.exp");
        }))
      softmaxWhy = w;
  }
  if (!y) {
    why = softmaxWhy;
    return failure();
  }

  Logit logit;
  if (failed(decompose(cx, y, 1.0, a.n, /*top=*/true, logit, why)))
    return failure();
  if (!logit.s) {
    why = "logits do not contain a Q . K^T contraction";
    return failure();
  }
  a.k = logit.s->dims[0];
  Expr *qk = stripCasts(cx, logit.s->contribution());
  double cq = 1.0, ck = 1.0, cv = 1.0;
  SmallVector<Expr *> c0, c1, cV;
  Expr *e0, *e1, *eV;
  bool ok0 = factor(cx, qk->operand(0), cq, true, c0, e0);
  bool ok1 = factor(cx, qk->operand(1), ck, true, c1, e1);
  // A tensor read, or an expression fused into the contraction.
  Expr *f0 = ok0 ? c0.front() : e0, *f1 = ok1 ? c1.front() : e1;
  bool dep0 = cx.dependsOn(f0, a.n), dep1 = cx.dependsOn(f1, a.n);
  if (dep0 == dep1) {
    why = dep0 ? "both operands of Q . K^T depend on the key axis"
               : "no operand of Q . K^T depends on the key axis";
    return failure();
  }
  a.q.load = dep0 ? f1 : f0;
  a.k_.load = dep0 ? f0 : f1;
  ArrayRef<Expr *> qChain = dep0 ? c1 : c0, kChain = dep0 ? c0 : c1;
  if (!(dep0 ? ok1 : ok0))
    a.q.computed = a.q.load;
  if (!(dep0 ? ok0 : ok1))
    a.k_.computed = a.k_.load;
  a.scale = logit.alpha * cq * ck;
  if (!(a.scale > 0.0) || !std::isfinite(a.scale)) {
    why = "the logit scale is not a finite positive number (got " +
          formatScale(a.scale) + ")";
    return failure();
  }
  if (factor(cx, vExpr, cv, /*allowScale=*/false, cV, eV)) {
    a.v.load = cV.front();
  } else {
    a.v.load = eV;
    a.v.computed = eV;
  }
  // Computed K or V is materialized per query head (G = 1).
  if (a.k_.computed || a.v.computed) {
    a.k_.computed = a.k_.load;
    a.v.computed = a.v.load;
  }

  // Loops: n and k are the two reductions; the rest are P . V's outputs.
  auto dimsOf = [&](Expr *e) {
    SmallVector<unsigned> d;
    cx.dimsOf(e, d);
    return d;
  };
  SmallVector<unsigned> qd = dimsOf(a.q.load), kd = dimsOf(a.k_.load),
                        vd = dimsOf(a.v.load);
  auto in = [](ArrayRef<unsigned> s, unsigned d) {
    return llvm::is_contained(s, d);
  };
  auto isOut = [&](unsigned d) { return in(a.outDims, d); };
  for (unsigned d : qd)
    if (!isOut(d) && d != a.k) {
      why = "Q depends on a loop of the key side";
      return failure();
    }
  for (unsigned d : kd)
    if (!isOut(d) && d != a.k && d != a.n) {
      why = "K depends on an unrelated loop";
      return failure();
    }
  for (unsigned d : vd)
    if (!isOut(d) && d != a.n) {
      why = "V depends on an unrelated loop";
      return failure();
    }
  SmallVector<unsigned> qOnly;
  for (unsigned d : a.outDims) {
    bool q = in(qd, d), k = in(kd, d), v = in(vd, d);
    if (v && !q && !k) {
      if (a.dv) {
        why = "V has more than one feature axis";
        return failure();
      }
      a.dv = d;
    } else if (q && !k && !v) {
      qOnly.push_back(d);
    }
  }

  // The bias: a sum of its terms (zero terms dropped).
  SmallVector<std::pair<Expr *, double>> terms;
  for (auto [e, c] : logit.bias) {
    std::optional<double> v = constOf(cx, e);
    if (v && *v == 0.0)
      continue;
    terms.push_back({e, c});
  }
  SmallVector<unsigned> bd;
  for (auto [e, c] : terms) {
    SmallVector<unsigned> d = dimsOf(e);
    bd.append(d.begin(), d.end());
  }
  for (unsigned d : bd)
    if (!isOut(d) && d != a.n) {
      why = "the mask depends on a reduction loop";
      return failure();
    }
  if (a.dv && in(bd, *a.dv)) {
    why = "the mask depends on the value features";
    return failure();
  }
  // The query axis: the query-only loop the mask reads, else the innermost
  // query-only axis of Q's layout.
  SmallVector<unsigned> masked;
  for (unsigned d : qOnly)
    if (in(bd, d))
      masked.push_back(d);
  if (masked.size() > 1) {
    why = "the mask depends on more than one query axis";
    return failure();
  }
  if (!masked.empty()) {
    a.m = masked.front();
  } else {
    for (AffineExpr e : a.q.load->idx)
      if (auto d = dyn_cast<AffineDimExpr>(e))
        if (in(qOnly, d.getPosition()))
          a.m = d.getPosition();
  }
  for (unsigned d : a.outDims)
    if (d != a.m && d != a.dv)
      a.heads.push_back(d);

  for (unsigned h : a.heads)
    a.numHeads *= cx.extent(h);
  auto pick = [&](Leaf &leaf, ArrayRef<Expr *> chain, StringRef what,
                  std::optional<unsigned> token,
                  std::optional<unsigned> feature) {
    if (!leaf.computed)
      return pickLeaf(cx, leaf, chain, what, token, feature, a.heads, why);
    if (!emittable(cx, leaf.computed)) {
      why = (what + " is computed inside the contraction from values that "
                    "cannot be recomputed elementwise")
                .str();
      return failure();
    }
    // One row per query head, materialized from the expression.
    leaf.numHeads = a.numHeads;
    for (int64_t j = 0; j < a.numHeads; ++j)
      leaf.headOf.push_back(j);
    return success();
  };
  if (failed(pick(a.q, qChain, "Q", a.m, a.k)) ||
      failed(pick(a.k_, kChain, "K", a.n, a.k)) ||
      failed(pick(a.v, cV, "V", a.n, a.dv)))
    return failure();
  a.numQueries = a.m ? cx.extent(*a.m) : 1;
  a.headDim = cx.extent(a.k);
  a.numKeys = cx.extent(a.n);
  a.valueDim = a.dv ? cx.extent(*a.dv) : 1;
  if (ShapedType::isDynamic(a.numQueries) || ShapedType::isDynamic(a.headDim) ||
      ShapedType::isDynamic(a.numKeys) || ShapedType::isDynamic(a.valueDim)) {
    why = "attention with dynamic shapes is not raised";
    return failure();
  }
  // Query heads in order; K/V heads shared by consecutive groups (GQA).
  for (int64_t j = 0; j < a.numHeads; ++j)
    if (a.q.headOf[j] != j) {
      why = "query heads are not laid out in the order of the output heads";
      return failure();
    }
  if (a.numHeads % a.k_.numHeads != 0) {
    why = "K's heads do not divide the query heads";
    return failure();
  }
  int64_t g = a.numHeads / a.k_.numHeads;
  for (int64_t j = 0; j < a.numHeads; ++j)
    if (a.k_.headOf[j] != j / g) {
      why = "K heads are not shared by consecutive query heads (the GQA "
            "layout kvcache.attention uses)";
      return failure();
    }
  if (a.v.numHeads != a.k_.numHeads || a.v.headOf != a.k_.headOf) {
    why = "V is not shared by the query heads like K is";
    return failure();
  }

  if (terms.empty())
    return a;

  // A bias of the query and key positions only (a constant mask, index
  // arithmetic): evaluated on the grid when it is not too large.
  Type f32 = Float32Type::get(cx.getContext());
  bool onlyPositions = llvm::all_of(
      bd, [&](unsigned d) { return d == a.n || (a.m && d == *a.m); });
  if (onlyPositions && a.numQueries * a.numKeys <= (1 << 20)) {
    Concrete conc(cx);
    bool known = true, all = true, causal = true;
    for (int64_t i = 0; i < a.numQueries && known; ++i)
      for (int64_t j = 0; j < a.numKeys && known; ++j) {
        if (a.m)
          conc.at[*a.m] = i;
        conc.at[a.n] = j;
        double sum = 0.0;
        for (auto [e, c] : terms) {
          std::optional<double> v = conc.eval(e);
          if (!v) {
            known = false;
            break;
          }
          sum += c * *v;
        }
        if (!known)
          break;
        if (sum != 0.0 && !isMaskingValue(sum)) {
          all = causal = false; // a real bias: keep it as a mask
          known = false;
          break;
        }
        bool visible = sum == 0.0;
        all &= visible;
        causal &= visible == (j <= i + a.numKeys - a.numQueries);
      }
    if (known && all)
      return a;
    if (known && causal && a.m) {
      a.mask = MaskKind::causal;
      return a;
    }
  }

  // One masking select on (m, n): a causal proof, else a mask operand.
  if (terms.size() == 1 && terms[0].second > 0.0) {
    Expr *sel = stripCasts(cx, terms[0].first);
    if (sel->isOp("arith.select")) {
      std::optional<double> t = constOf(cx, sel->operand(1));
      std::optional<double> f = constOf(cx, sel->operand(2));
      bool visibleIfTrue = t && *t == 0.0 && isMaskingValue(f);
      bool visibleIfFalse = f && *f == 0.0 && isMaskingValue(t);
      if (visibleIfTrue || visibleIfFalse) {
        if (std::optional<Lin> vis =
                halfPlane(cx, sel->operand(0), /*negate=*/visibleIfFalse)) {
          int64_t an = vis->coef.lookup(a.n);
          int64_t am = a.m ? vis->coef.lookup(*a.m) : 0;
          bool onlyMN = llvm::all_of(vis->coef, [&](auto kv) {
            return kv.second == 0 || kv.first == a.n || kv.first == a.m;
          });
          if (onlyMN && an < 0 && (am == -an || am == 0)) {
            // Visible: n <= m + off (or n <= off when it ignores m).
            int64_t off = floorDiv(vis->cst, -an);
            if (off >= a.numKeys - 1)
              return a; // every key visible to every query: no mask
            if (a.m && am == -an && off == a.numKeys - a.numQueries) {
              a.mask = MaskKind::causal;
              return a;
            }
          }
        }
        if (isMaskingValue(visibleIfTrue ? f : t) &&
            std::isinf(*(visibleIfTrue ? f : t))) {
          // select(visible, 0, -inf): a boolean mask.
          Expr *cond = sel->operand(0);
          if (visibleIfFalse)
            cond = cx.op("arith.xori", cond->type,
                         {cond, cx.constant(IntegerAttr::get(IntegerType::get(cx.getContext(), 1), 1))});
          a.mask = MaskKind::boolean;
          a.bias = cond;
        }
      }
    }
  }
  if (a.mask == MaskKind::none) {
    // Additive: sum(coef * term), in f32.
    Expr *sum = nullptr;
    for (auto [e, c] : terms) {
      Expr *x = e;
      if (x->type != f32)
        x = cx.op(x->type.getIntOrFloatBitWidth() < 32 ? "arith.extf"
                                                       : "arith.truncf",
                  f32, {x});
      if (c != 1.0)
        x = cx.op("arith.mulf", f32, {x, cx.constant(FloatAttr::get(f32, c))});
      sum = sum ? cx.op("arith.addf", f32, {sum, x}) : x;
    }
    a.mask = MaskKind::additive;
    a.bias = sum;
  }
  if (!emittable(cx, a.bias)) {
    why = "the mask depends on an undefined value or a reduction it computes "
          "itself";
    return failure();
  }
  SmallVector<unsigned> maskDims = dimsOf(a.bias);
  for (auto [i, h] : llvm::enumerate(a.heads))
    if (in(maskDims, h))
      a.maskHeads = i + 1;
  a.maskPerQuery = a.m && in(maskDims, *a.m);
  return a;
}
