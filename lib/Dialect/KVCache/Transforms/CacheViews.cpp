//===- CacheViews.cpp - how a cache tensor reaches an attention -----------===//

#include "CacheViews.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace kvmerge::kvcache;

namespace {
/// The shape of `v` with the token dimension `t` resized to `tokens`.
SmallVector<int64_t> withTokens(Value v, int64_t t, int64_t tokens) {
  SmallVector<int64_t> shape(cast<RankedTensorType>(v.getType()).getShape());
  shape[t] = tokens;
  return shape;
}

/// In a reassociation group of `shape`, the one dim of size != 1 (the token
/// dim); -1 if there are several.
int64_t soleNonUnit(ArrayRef<int64_t> shape, const ReassociationIndices &g) {
  int64_t found = -1;
  for (int64_t d : g)
    if (shape[d] != 1) {
      if (found >= 0)
        return -1;
      found = d;
    }
  return found >= 0 ? found : g.front();
}
} // namespace

ViewChain ViewChain::trace(Value operand, int64_t tokenDim) {
  ViewChain c;
  SmallVector<Value> vals{operand};
  SmallVector<Operation *> ops;
  SmallVector<int64_t> toks{tokenDim};
  Value v = operand;
  int64_t t = tokenDim;
  while (Operation *def = v.getDefiningOp()) {
    Value src;
    int64_t st = -1;
    if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
      src = collapse.getSrc();
      st = soleNonUnit(collapse.getSrcType().getShape(),
                       collapse.getReassociationIndices()[t]);
    } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def)) {
      src = expand.getSrc();
      for (auto [i, g] : llvm::enumerate(expand.getReassociationIndices()))
        if (llvm::is_contained(g, t) &&
            soleNonUnit(expand.getResultType().getShape(), g) == t)
          st = i;
    } else if (auto tr = dyn_cast<linalg::TransposeOp>(def)) {
      src = tr.getInput();
      st = tr.getPermutation()[t];
    } else {
      break;
    }
    if (st < 0)
      break;
    ops.push_back(def);
    vals.push_back(src);
    toks.push_back(st);
    v = src;
    t = st;
  }
  c.values.assign(vals.rbegin(), vals.rend());
  c.ops.assign(ops.rbegin(), ops.rend());
  c.tokenDim.assign(toks.rbegin(), toks.rend());
  return c;
}

int64_t ViewChain::find(Value v) const {
  for (auto [i, x] : llvm::enumerate(values))
    if (x == v)
      return i;
  return -1;
}

Value ViewChain::forward(OpBuilder &b, Location loc, unsigned from,
                         Value x) const {
  int64_t tokens =
      cast<RankedTensorType>(x.getType()).getDimSize(tokenDim[from]);
  for (unsigned i = from; i < ops.size(); ++i) {
    Operation *op = ops[i];
    Type elt = cast<RankedTensorType>(x.getType()).getElementType();
    auto type = RankedTensorType::get(
        withTokens(values[i + 1], tokenDim[i + 1], tokens), elt);
    if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(op))
      x = tensor::CollapseShapeOp::create(b, loc, type, x,
                                          collapse.getReassociationIndices());
    else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op))
      x = tensor::ExpandShapeOp::create(b, loc, type, x,
                                        expand.getReassociationIndices());
    else {
      auto tr = cast<linalg::TransposeOp>(op);
      Value init = tensor::EmptyOp::create(b, loc, type.getShape(), elt);
      x = linalg::TransposeOp::create(b, loc, x, init, tr.getPermutation())
              ->getResult(0);
    }
  }
  return x;
}

Value ViewChain::backward(OpBuilder &b, Location loc, unsigned to,
                          Value x) const {
  int64_t tokens =
      cast<RankedTensorType>(x.getType()).getDimSize(tokenDim.back());
  for (unsigned i = ops.size(); i-- > to;) {
    Operation *op = ops[i];
    Type elt = cast<RankedTensorType>(x.getType()).getElementType();
    auto type =
        RankedTensorType::get(withTokens(values[i], tokenDim[i], tokens), elt);
    if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(op))
      x = tensor::ExpandShapeOp::create(b, loc, type, x,
                                        collapse.getReassociationIndices());
    else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op))
      x = tensor::CollapseShapeOp::create(b, loc, type, x,
                                          expand.getReassociationIndices());
    else {
      auto tr = cast<linalg::TransposeOp>(op);
      SmallVector<int64_t> inverse(tr.getPermutation().size());
      for (auto [i, p] : llvm::enumerate(tr.getPermutation()))
        inverse[p] = i;
      Value init = tensor::EmptyOp::create(b, loc, type.getShape(), elt);
      x = linalg::TransposeOp::create(b, loc, x, init, inverse)->getResult(0);
    }
  }
  return x;
}
