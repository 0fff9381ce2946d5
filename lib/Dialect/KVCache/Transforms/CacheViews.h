//===- CacheViews.h - how a cache tensor reaches an attention --*- C++ -*-===//
//
// Frontends keep caches as [B, H, L, D] (Hugging Face) while kvcache.attention
// reads [heads, tokens, features]; kvmerge-raise-attention connects the two
// with views (linalg.transpose, tensor.collapse_shape / expand_shape). A
// `ViewChain` is that path from a cache value to the attention operand, with
// the token dimension tracked through it, so that a compressed or appended
// [heads, slots, features] tensor can be put back into the cache's own layout
// (and a cache argument into the attention's) with another slot count.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_CACHEVIEWS_H
#define KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_CACHEVIEWS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"

namespace kvmerge::kvcache {

struct ViewChain {
  /// values[0] is the furthest value reached, values.back() the attention
  /// operand; ops[i] makes values[i + 1] from values[i].
  llvm::SmallVector<mlir::Value> values;
  llvm::SmallVector<mlir::Operation *> ops;
  /// The token dimension of each value.
  llvm::SmallVector<int64_t> tokenDim;

  /// Walks back from `operand` (token dimension `tokenDim`) through views
  /// that keep the token axis a dimension of its own.
  static ViewChain trace(mlir::Value operand, int64_t tokenDim = 1);
  /// The index of `v` in `values`, or -1.
  int64_t find(mlir::Value v) const;
  /// Applies ops[from..] to `x`, a tensor laid out like values[from] but with
  /// `tokens` tokens: the attention operand's layout.
  mlir::Value forward(mlir::OpBuilder &b, mlir::Location loc, unsigned from,
                      mlir::Value x) const;
  /// The inverse: `x` laid out like the attention operand (any number of
  /// tokens) back into the layout of values[to].
  mlir::Value backward(mlir::OpBuilder &b, mlir::Location loc, unsigned to,
                       mlir::Value x) const;
};

} // namespace kvmerge::kvcache

#endif // KVMERGE_LIB_DIALECT_KVCACHE_TRANSFORMS_CACHEVIEWS_H
