//===- Passes.td - kvcache transformation passes -----------*- tablegen -*-===//

#ifndef KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_TD
#define KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def KVCacheDecomposeCompress : Pass<"kvmerge-decompose-compress"> {
  let summary = "Rewrite kvcache.compress into slot-map ops and kvcache.merge";
  let description = [{
    Every policy of `kvcache.compress` is a *slot map* followed by one
    `kvcache.merge`:

    * `kvmerger`: `kvcache.similarity` then `kvcache.merge_sets`;
    * `h2o`: `kvcache.select_sets` with `middle = B - sink - recent`;
    * `streaming`: `kvcache.select_sets` with `middle(0)`,
      `recent = B - sink`;
    * `full` and caches already within budget fold to the identity (the
      canonicalization of `kvcache.compress`).

    A `ratio` budget needs a static cache length; otherwise the pass emits
    an error naming the op.

    ```
    kvmerge-opt --kvmerge-decompose-compress input.mlir
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect"];
}

def KVCacheRaiseAttention : Pass<"kvmerge-raise-attention"> {
  let summary = "Recognize scaled dot-product attention and raise it to kvcache.attention";
  let description = [{
    Finds attention as frontends write it in upstream dialects on tensors
    and replaces it with one `kvcache.attention`:

    * `Q . K^T`: any batched contraction (`linalg.batch_matmul`, with or
      without `indexing_maps`, `linalg.generic`) with a zero accumulator;
      `K^T` through the indexing map or a `linalg.transpose`;
    * a scale by a constant (multiply or divide) — required;
    * an optional causal mask: an additive constant (0 on and below the
      diagonal, <= -1e4 or -inf above) or a masked fill
      `select(index(2) > index(1), -inf, x)`;
    * softmax over the key axis: `linalg.softmax` or the
      max / sub / exp / sum / div `linalg.generic` chain;
    * `P . V`: a batched contraction;
    * GQA: K and V shared through `linalg.broadcast` (or a broadcasting
      generic) to `[Hkv, G, N, D]` and `tensor.collapse_shape` to
      `[Hq, N, D]`; `extf` / `truncf` around any of these are looked through.

    Tensors are `[heads, tokens, head_dim]` (batch folded into heads). Anything
    that is not exactly attention is left untouched; `remarks=true` explains
    each rejected candidate with a remark on its `P . V` contraction.
  }];
  let options = [
    Option<"remarks", "remarks", "bool", /*default=*/"false",
           "Emit a remark for each raised attention and each rejected candidate">
  ];
  let dependentDialects = ["::mlir::tensor::TensorDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::kvmerge::kvcache::KVCacheDialect"];
}

#endif // KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_TD
