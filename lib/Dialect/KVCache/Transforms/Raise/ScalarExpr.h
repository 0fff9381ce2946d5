//===- ScalarExpr.h - tensor programs as scalar expressions ----*- C++ -*-===//
//
// The canonical form the attention matcher works on. A value of a tensor
// program on linalg/tensor ops is described *per element*: the element at
// index `idx` (affine expressions of symbolic loop dimensions) is a scalar
// expression DAG over
//
//   Load(tensor, idx)   an element of a tensor the analysis does not look into
//   Index(expr)         a loop index (linalg.index)
//   Const / External    a constant / a scalar defined outside the ops
//   Op(name, operands)  a pure scalar op of a linalg body (arith, math, ...)
//   Reduce(comb, init, contribution, dims)   a reduction loop nest
//
// Views (expand/collapse_shape, extract_slice, transpose/broadcast/copy
// generics, fill, splat constants) are looked through eagerly: they only
// change the indices. Compute ops (elementwise or reduction linalg ops, on
// named or generic form, and linalg.softmax) are inlined lazily by `peel`, so
// the same computation has the same form whether it was written as one fused
// generic or as a chain of ops. Nodes are hash-consed: structural equality is
// pointer equality. Index expressions are simplified with the loop extents,
// so reshapes that cancel leave plain loop dimensions.
//
// This replaces rewriting the IR into a canonical form with upstream fusion:
// fusing would also fold Q, K and V into the contractions (RoPE into Q . K^T),
// destroying the very tensors attention must read and the caches a prefill
// returns; the expression form keeps every tensor and still sees through
// every spelling.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_SCALAREXPR_H
#define KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_SCALAREXPR_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/FoldingSet.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Allocator.h"

#include <optional>

namespace kvmerge::raise {

struct Expr : llvm::FoldingSetNode {
  enum class Kind { Load, Index, Const, External, Op, Reduce, Acc, Poison };
  Kind kind;
  mlir::Type type;
  mlir::Value value;                    // Load: tensor; External: scalar
  mlir::Attribute attr;                 // Const: value; Op: attributes
  mlir::StringAttr name;                // Op: op name; Reduce: combiner
  llvm::SmallVector<mlir::AffineExpr> idx; // Load, Index ({e}), Reduce key
  llvm::SmallVector<Expr *> operands;   // Op; Reduce: {init, contribution}
  llvm::SmallVector<unsigned> dims;     // Reduce: the reduced dimensions
  mlir::Operation *origin = nullptr;    // Reduce: producer
  unsigned tag = 0;                     // Reduce: result / synthetic part
  bool hasAcc = false;                  // refers to a reduction accumulator

  void Profile(llvm::FoldingSetNodeID &id) const;

  bool isa(Kind k) const { return kind == k; }
  bool isOp(llvm::StringRef n) const { return kind == Kind::Op && name == n; }
  Expr *operand(unsigned i) const { return operands[i]; }
  Expr *init() const { return operands[0]; }
  Expr *contribution() const { return operands[1]; }
  /// The constant as a double (float, int or bool constants).
  std::optional<double> constant() const;
};

/// Builds and analyzes expressions; owns every node and dimension.
class ExprContext {
public:
  explicit ExprContext(mlir::MLIRContext *ctx) : ctx(ctx) {}
  mlir::MLIRContext *getContext() const { return ctx; }

  /// A new loop dimension of `extent` (ShapedType::kDynamic if unknown).
  unsigned newDim(int64_t extent);
  mlir::AffineExpr dim(unsigned d) const;
  int64_t extent(unsigned d) const { return extents[d]; }
  unsigned numDims() const { return extents.size(); }

  /// The element `idx` of tensor `t`, seen through views.
  Expr *tensorAt(mlir::Value t, llvm::ArrayRef<mlir::AffineExpr> idx);
  /// The views a Load was first reached through, from the reader to the
  /// source: the same element as other tensors (e.g. the [B, H, L, D] cache
  /// a function returns, where the Load is the projection it views).
  using View = std::pair<mlir::Value, llvm::SmallVector<mlir::AffineExpr>>;
  llvm::ArrayRef<View> viewsOf(Expr *load) const {
    auto it = trails.find(load);
    return it == trails.end() ? llvm::ArrayRef<View>() : it->second;
  }
  /// Inlines the compute op that produces a Load'ed tensor (one level);
  /// other nodes are returned unchanged.
  Expr *peel(Expr *e);
  /// `peel` until the top node is not an inlinable Load.
  Expr *head(Expr *e);
  /// Every inlinable Load inlined, recursively (reductions stay nodes).
  Expr *canon(Expr *e);
  /// Elementwise producers inlined, reductions kept as Loads of their
  /// tensors: the form that can be re-emitted as one generic body.
  Expr *inlineElementwise(Expr *e);
  /// `e` with loop dimensions replaced.
  Expr *substitute(Expr *e, const llvm::DenseMap<unsigned, mlir::AffineExpr> &m);
  /// The loop dimensions the value of `e` depends on.
  void dimsOf(Expr *e, llvm::SmallVectorImpl<unsigned> &out);
  bool dependsOn(Expr *e, unsigned d);
  /// Whether `e` contains `sub` (after canon of both).
  bool contains(Expr *e, Expr *sub);

  /// The reduction of a linalg op's result `r` at output index `idx`, or its
  /// elementwise expression; null if it cannot be described.
  Expr *evalResult(mlir::linalg::LinalgOp op, unsigned r,
                   llvm::ArrayRef<mlir::AffineExpr> idx);

  // Node constructors (hash-consed).
  Expr *load(mlir::Value t, llvm::ArrayRef<mlir::AffineExpr> idx);
  Expr *index(mlir::AffineExpr e);
  Expr *constant(mlir::TypedAttr value);
  Expr *external(mlir::Value v);
  Expr *op(llvm::StringRef name, mlir::Type type, llvm::ArrayRef<Expr *> ops,
           mlir::DictionaryAttr attrs = {});
  Expr *poison(mlir::Type t);

  /// Prints `e` as a term (for debugging and remarks), `depth` levels deep.
  void print(Expr *e, llvm::raw_ostream &os, int depth = 6);

  /// Range-aware simplification of an index expression.
  mlir::AffineExpr simplify(mlir::AffineExpr e) const;
  /// [lo, hi] of an index expression over the loop extents, if bounded.
  std::optional<std::pair<int64_t, int64_t>> range(mlir::AffineExpr e) const;

private:
  Expr *intern(Expr &proto);
  Expr *tensorAtImpl(mlir::Value t, llvm::ArrayRef<mlir::AffineExpr> idx,
                     llvm::SmallVectorImpl<View> &trail);
  Expr *acc(unsigned arg, mlir::Type t);
  Expr *scalar(mlir::Value v);
  Expr *softmaxAt(mlir::linalg::SoftmaxOp op,
                  llvm::ArrayRef<mlir::AffineExpr> idx);
  Expr *softmaxPart(mlir::linalg::SoftmaxOp op, unsigned tag,
                    llvm::ArrayRef<mlir::AffineExpr> idx);
  Expr *reduceNode(mlir::Operation *origin, unsigned tag,
                   llvm::ArrayRef<mlir::AffineExpr> key, mlir::Type type,
                   llvm::function_ref<Expr *(Expr &)> build);
  Expr *rebuildReduce(Expr *r, llvm::ArrayRef<mlir::AffineExpr> key);

  mlir::MLIRContext *ctx;
  llvm::SmallVector<int64_t> extents;
  llvm::BumpPtrAllocator alloc;
  llvm::FoldingSet<Expr> nodes;
  llvm::DenseMap<Expr *, Expr *> canonMemo;
  llvm::DenseMap<Expr *, Expr *> peelMemo;
  llvm::DenseMap<Expr *, Expr *> flatMemo;
  llvm::DenseMap<Expr *, llvm::SmallVector<View>> trails;
};

} // namespace kvmerge::raise

#endif // KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_SCALAREXPR_H
