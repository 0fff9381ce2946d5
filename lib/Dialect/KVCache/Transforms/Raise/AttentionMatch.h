//===- AttentionMatch.h - attention in the scalar-expression form -*- C++ -*-===//
//
// The one matcher of kvmerge-raise-attention. It reads a contraction
// `O = sum_n P[.., n] * V[.., n, ..]` in the scalar-expression form of
// ScalarExpr.h and proves, by the meaning of the expressions rather than by
// the ops that spell them:
//
//   P = E / sum_n E,  E = exp(Y)           (softmax over the key axis n; a
//                                           "safe softmax" select around it)
//   Y = alpha * S + bias + (terms that do not depend on n: the max)
//   S = sum_k Q[.., k] * K[.., n, k]       (Q . K^T; constant factors on Q
//                                           or K, casts, are folded into
//                                           alpha)
//
// and classifies the loops (heads, query tokens m, key tokens n, head dims)
// and the bias: none, causal (a proof on the integer index arithmetic), or a
// mask to materialize. Everything here is analysis; RaiseAttention.cpp builds
// the kvcache.attention from it.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_ATTENTIONMATCH_H
#define KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_ATTENTIONMATCH_H

#include "ScalarExpr.h"

#include "mlir/Support/LogicalResult.h"

#include <string>

namespace kvmerge::raise {

/// How the logits are masked.
enum class MaskKind { none, causal, additive, boolean };

/// A tensor operand of attention read as `[heads, tokens, features]`.
struct Leaf {
  Expr *load = nullptr;             // the Load node
  /// Set when the operand is computed inside the contraction (the IR was
  /// fused before raising): its element expression, to materialize.
  Expr *computed = nullptr;
  llvm::SmallVector<int64_t> headPositions; // tensor dims indexed by heads
  int64_t tokenPosition = -1;       // dim indexed by the token loop (-1: none)
  int64_t featurePosition = -1;     // dim indexed by the feature loop
  /// For every flat query head j: the flat head of this leaf that j reads
  /// (row-major over `headPositions`).
  llvm::SmallVector<int64_t> headOf;
  int64_t numHeads = 1;
};

struct AttentionMatch {
  mlir::linalg::LinalgOp pv;            // the P . V contraction
  llvm::SmallVector<unsigned> outDims;  // loop dims of pv's result dims
  unsigned n = 0, k = 0;                // key-token and head-dim loops
  std::optional<unsigned> m, dv;        // query-token and value-feature loops
  llvm::SmallVector<unsigned> heads;    // query-head loops, outer first
  int64_t numHeads = 1, numQueries = 1, headDim = 0, numKeys = 0, valueDim = 1;
  Leaf q, k_, v;
  double scale = 1.0;
  MaskKind mask = MaskKind::none;
  Expr *bias = nullptr;        // additive: the float bias; boolean: visible
  unsigned maskHeads = 0;      // mask rows: the first `maskHeads` head loops
  bool maskPerQuery = false;   // the mask depends on the query token
  bool safeSoftmax = false;
  int64_t group() const { return numHeads / k_.numHeads; }
};

/// Whether `op`'s result is a contraction one of whose factors is normalized
/// like probabilities (a sum of exponentials): the candidates that deserve a
/// remark when they are not raised.
bool looksLikeAttention(ExprContext &cx, mlir::linalg::LinalgOp op);

/// For a contraction that `looksLikeAttention` rejects: whether a softmax (an
/// exponential and a reduction, not crossing another contraction) reaches one
/// of its operands through ops the expression form does not look into, found
/// on the SSA graph instead. Returns the remark's reason (naming the op that
/// blocked the analysis), or "" when nothing attention-like reaches `op`.
std::string opaqueAttention(ExprContext &cx, mlir::linalg::LinalgOp op);

/// Matches attention ending in the contraction `op`; on failure `why` names
/// the part that did not match.
mlir::FailureOr<AttentionMatch> matchAttention(ExprContext &cx,
                                               mlir::linalg::LinalgOp op,
                                               std::string &why);

} // namespace kvmerge::raise

#endif // KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_RAISE_ATTENTIONMATCH_H
