//===- KVCacheOps.td - kvcache operations ------------------*- tablegen -*-===//
//
// Operations of the kvcache dialect. Their semantics are those of
// shared/spec/kvmerger.md; `python/kvmerge/reference.py` is the executable
// oracle with one function per op.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_DIALECT_KVCACHE_IR_KVCACHEOPS_TD
#define KVMERGE_DIALECT_KVCACHE_IR_KVCACHEOPS_TD

include "kvmerge/Dialect/KVCache/IR/KVCacheDialect.td"
include "kvmerge/Dialect/KVCache/IR/KVCacheAttrs.td"
include "mlir/Interfaces/DestinationStyleOpInterface.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/CommonAttrConstraints.td"

def KVCache_FloatTensor : RankedTensorOf<[F16, BF16, F32, F64]>;
def KVCache_F32Tensor : RankedTensorOf<[F32]>;
def KVCache_I32Tensor : RankedTensorOf<[I32]>;
def KVCache_MaskTensor : RankedTensorOf<[F16, BF16, F32, F64, I1]>;

//===----------------------------------------------------------------------===//
// similarity
//===----------------------------------------------------------------------===//

def KVCache_SimilarityOp : KVCache_Op<"similarity", [Pure]> {
  let summary = "cosine similarity of adjacent keys";
  let description = [{
    `s[h, t] = cos(K[h, t], K[h, t + 1])` for `t < L - 1` (Observation 1 of
    KVMerger). A zero-norm key has similarity 0 with every key, never NaN.
    Computed in f64 from the keys' exact values in one fixed order (16 lane
    sums over the head dim, lane j taking d = j, j + 16, ...; lanes combined
    by halving; no fused multiply-add), clipped to [-1, 1] and rounded once
    to f32, so every lowering (loops, GPU, upstream export) and the NumPy
    reference produce the same bits (docs/reference.md, choice 3).

    ```mlir
    %s = kvcache.similarity %keys : tensor<3x128x64xf16> -> tensor<3x127xf32>
    ```
  }];
  let arguments = (ins KVCache_FloatTensor:$keys);
  let results = (outs KVCache_F32Tensor:$result);
  let assemblyFormat = "$keys attr-dict `:` type($keys) `->` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// merge_sets
//===----------------------------------------------------------------------===//

def KVCache_MergeSetsOp : KVCache_Op<"merge_sets", [Pure]> {
  let summary = "merging-set identification (KVMerger step 1)";
  let description = [{
    Splits each head's mergeable middle `[sink, L - recent)` into runs of
    consecutive tokens and returns the *slot map*: `slot[h, t]` is the output
    slot of token `t` (sink tokens take slots `0 .. sink-1`, each middle run
    one slot, the recent tokens one slot each), and `lengths[h]` the number of
    used slots.

    `mode = budget`: cut at the `middle - 1` lowest adjacent similarities of
    the middle (ties: the older link first), giving exactly `middle` runs.
    `mode = threshold`: a run continues while `s >= eps`; if that yields more
    than `middle` runs, only the `middle - 1` lowest links stay cut.
    If the middle has no more than `middle` tokens every token is its own run.

    `heavy(N)` (spec v2, needs `scores`): the `N` middle tokens with the
    largest score (ties: the newer) are heavy hitters, each its own slot and
    never merged; they split the other middle tokens into `n_seg` segments,
    no run crosses a segment border, and the cuts are counted per segment:
    `middle - N - n_seg` weakest links (budget), or the links below `eps`
    unless they are more (threshold). `2 * N + 1 <= middle`. `heavy(0)`
    (the default) is the spec's version 1.

    ```mlir
    %slot, %len = kvcache.merge_sets %s sink(4) recent(16) middle(44)
        mode(budget) : tensor<3x127xf32> -> tensor<3x128xi32>, tensor<3xi32>
    %slot, %len = kvcache.merge_sets %s scores(%a : tensor<3x128xf32>)
        sink(4) recent(16) middle(44) heavy(21) mode(budget)
        : tensor<3x127xf32> -> tensor<3x128xi32>, tensor<3xi32>
    ```
  }];
  let arguments = (ins
    KVCache_F32Tensor:$similarity,
    Optional<KVCache_F32Tensor>:$scores,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$sink,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$recent,
    I64Attr:$middle,
    DefaultValuedAttr<I64Attr, "0">:$heavy,
    KVCache_MergeModeAttr:$mode,
    DefaultValuedAttr<F64Attr, "0.75">:$eps);
  let results = (outs KVCache_I32Tensor:$slots, KVCache_I32Tensor:$lengths);
  let assemblyFormat = [{
    $similarity (`scores` `(` $scores^ `:` type($scores) `)`)?
    `sink` `(` $sink `)` `recent` `(` $recent `)`
    `middle` `(` $middle `)` (`heavy` `(` $heavy^ `)`)?
    `mode` `(` custom<MergeMode>($mode) `)` (`eps` `(` $eps^ `)`)?
    attr-dict `:` type($similarity) `->` type($slots) `,` type($lengths)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// select_sets
//===----------------------------------------------------------------------===//

def KVCache_SelectSetsOp : KVCache_Op<"select_sets", [Pure]> {
  let summary = "eviction slot map (H2O heavy hitters / StreamingLLM)";
  let description = [{
    Keeps the `sink` oldest and `recent` newest tokens and, from the middle,
    the `middle` tokens with the largest accumulated score (ties: the newer
    token is kept), each in its own slot in token order; every other token is
    evicted (`slot = -1`). `middle(0)` with `recent = B - sink` is
    StreamingLLM; `recent = ceil(B/4)`, `middle = B - sink - recent` is H2O.
    The result is a slot map for `kvcache.merge`, like `kvcache.merge_sets`.

    ```mlir
    %slot, %len = kvcache.select_sets %scores sink(4) recent(16) middle(44)
        : tensor<3x128xf32> -> tensor<3x128xi32>, tensor<3xi32>
    ```
  }];
  let arguments = (ins
    KVCache_F32Tensor:$scores,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$sink,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$recent,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$middle);
  let results = (outs KVCache_I32Tensor:$slots, KVCache_I32Tensor:$lengths);
  let assemblyFormat = [{
    $scores `sink` `(` $sink `)` `recent` `(` $recent `)`
    `middle` `(` $middle `)` attr-dict `:` type($scores) `->` type($slots)
    `,` type($lengths)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// merge
//===----------------------------------------------------------------------===//

def KVCache_MergeOp : KVCache_Op<"merge", [
    Pure, DestinationStyleOpInterface,
    AllTypesMatch<["keys_init", "merged_keys"]>,
    AllTypesMatch<["values_init", "merged_values"]>,
    AllTypesMatch<["positions_init", "positions"]>,
    AllTypesMatch<["counts_init", "counts"]>,
    AllTypesMatch<["scores_init", "merged_scores"]>]> {
  let summary = "pivot + Gaussian-kernel weighted merge (KVMerger steps 2-3)";
  let description = [{
    For every used slot `s < lengths[h]`, the tokens `S = {t | slot[h,t] = s}`
    are merged into one: the pivot `p` is the token of largest score (ties:
    the newest), weights are `w_i = g_i / sum g` with
    `g_i = exp(-||K_p - K_i||^2 / (2 sigma^2))`, and the slot receives
    `sum w_i K_i`, `sum w_i V_i`, position `p`, count `|S|` and score
    `sum a_i`. Tokens with `slot = -1` are dropped. Slots `>= lengths[h]`
    are zero. The capacity `B` is the slot dimension of the destinations.
    `sigma` defaults to `#kvcache.sigma<auto>`.
    Accumulates in f32.

    ```mlir
    %k, %v, %pos, %cnt, %sc = kvcache.merge
        ins(%keys, %values, %scores : tensor<3x128x64xf16>,
            tensor<3x128x64xf16>, tensor<3x128xf32>)
        slots(%slot, %len : tensor<3x128xi32>, tensor<3xi32>)
        outs(%k0, %v0, %p0, %c0, %s0 : tensor<3x64x64xf16>,
             tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>,
             tensor<3x64xf32>)
        {sigma = #kvcache.sigma<auto>}
    ```
  }];
  let arguments = (ins
    KVCache_FloatTensor:$keys, KVCache_FloatTensor:$values,
    KVCache_F32Tensor:$scores, KVCache_I32Tensor:$slots,
    KVCache_I32Tensor:$lengths,
    KVCache_FloatTensor:$keys_init, KVCache_FloatTensor:$values_init,
    KVCache_I32Tensor:$positions_init, KVCache_I32Tensor:$counts_init,
    KVCache_F32Tensor:$scores_init,
    OptionalAttr<KVCache_SigmaAttr>:$sigma);
  let results = (outs
    KVCache_FloatTensor:$merged_keys, KVCache_FloatTensor:$merged_values,
    KVCache_I32Tensor:$positions, KVCache_I32Tensor:$counts,
    KVCache_F32Tensor:$merged_scores);
  let assemblyFormat = [{
    `ins` `(` $keys `,` $values `,` $scores `:` type($keys) `,` type($values)
      `,` type($scores) `)`
    `slots` `(` $slots `,` $lengths `:` type($slots) `,` type($lengths) `)`
    `outs` `(` $keys_init `,` $values_init `,` $positions_init `,`
      $counts_init `,` $scores_init `:` type($keys_init) `,`
      type($values_init) `,` type($positions_init) `,` type($counts_init)
      `,` type($scores_init) `)`
    attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::MutableOperandRange getDpsInitsMutable() {
      return ::mlir::MutableOperandRange(getOperation(), 5, 5);
    }
    /// The kernel width; `#kvcache.sigma<auto>` when the attribute is absent.
    SigmaAttr getSigmaOrDefault() {
      if (SigmaAttr sigma = getSigmaAttr())
        return sigma;
      return SigmaAttr::get(getContext(), SigmaKind::automatic);
    }
  }];
}

//===----------------------------------------------------------------------===//
// fused_merge
//===----------------------------------------------------------------------===//

def KVCache_FusedMergeOp : KVCache_Op<"fused_merge", [
    Pure, DestinationStyleOpInterface,
    AllTypesMatch<["keys_init", "merged_keys"]>,
    AllTypesMatch<["values_init", "merged_values"]>,
    AllTypesMatch<["positions_init", "positions"]>,
    AllTypesMatch<["counts_init", "counts"]>,
    AllTypesMatch<["scores_init", "merged_scores"]>,
    AllTypesMatch<["lengths_init", "lengths"]>]> {
  let summary = "similarity + merge sets + merge of each KV head in one region";
  let description = [{
    `kvcache.similarity`, `kvcache.merge_sets` and `kvcache.merge` of the
    same keys as one op (made by `kvmerge-fuse-merge`): its lowering is one
    region per KV head that sweeps the head's keys once for the adjacent
    similarities, selects the cuts, and then merges slot after slot in token
    order, so every key and value row of the head is streamed from memory
    in order (the rows of one merging set are revisited while still in
    cache). Attributes as in `kvcache.merge_sets` and `kvcache.merge`.

    ```mlir
    %k, %v, %p, %c, %s, %len = kvcache.fused_merge
        ins(%keys, %values, %scores : tensor<3x128x64xf16>,
            tensor<3x128x64xf16>, tensor<3x128xf32>)
        outs(%k0, %v0, %p0, %c0, %s0, %l0 : tensor<3x64x64xf16>,
             tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>,
             tensor<3x64xf32>, tensor<3xi32>)
        sink(4) recent(16) middle(44) mode(budget)
    ```
  }];
  let arguments = (ins
    KVCache_FloatTensor:$keys, KVCache_FloatTensor:$values,
    KVCache_F32Tensor:$scores,
    KVCache_FloatTensor:$keys_init, KVCache_FloatTensor:$values_init,
    KVCache_I32Tensor:$positions_init, KVCache_I32Tensor:$counts_init,
    KVCache_F32Tensor:$scores_init, KVCache_I32Tensor:$lengths_init,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$sink,
    ConfinedAttr<I64Attr, [IntNonNegative]>:$recent,
    I64Attr:$middle,
    DefaultValuedAttr<I64Attr, "0">:$heavy,
    KVCache_MergeModeAttr:$mode,
    DefaultValuedAttr<F64Attr, "0.75">:$eps,
    OptionalAttr<KVCache_SigmaAttr>:$sigma);
  let results = (outs
    KVCache_FloatTensor:$merged_keys, KVCache_FloatTensor:$merged_values,
    KVCache_I32Tensor:$positions, KVCache_I32Tensor:$counts,
    KVCache_F32Tensor:$merged_scores, KVCache_I32Tensor:$lengths);
  let assemblyFormat = [{
    `ins` `(` $keys `,` $values `,` $scores `:` type($keys) `,` type($values)
      `,` type($scores) `)`
    `outs` `(` $keys_init `,` $values_init `,` $positions_init `,`
      $counts_init `,` $scores_init `,` $lengths_init `:` type($keys_init) `,`
      type($values_init) `,` type($positions_init) `,` type($counts_init)
      `,` type($scores_init) `,` type($lengths_init) `)`
    `sink` `(` $sink `)` `recent` `(` $recent `)`
    `middle` `(` $middle `)` (`heavy` `(` $heavy^ `)`)?
    `mode` `(` custom<MergeMode>($mode) `)`
    (`eps` `(` $eps^ `)`)? attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::MutableOperandRange getDpsInitsMutable() {
      return ::mlir::MutableOperandRange(getOperation(), 3, 6);
    }
    SigmaAttr getSigmaOrDefault() {
      if (SigmaAttr sigma = getSigmaAttr())
        return sigma;
      return SigmaAttr::get(getContext(), SigmaKind::automatic);
    }
  }];
}

//===----------------------------------------------------------------------===//
// accumulated_scores
//===----------------------------------------------------------------------===//

def KVCache_AccumulatedScoresOp : KVCache_Op<"accumulated_scores", [Pure]> {
  let summary = "H2O accumulated attention score of every cached token";
  let description = [{
    `a[h, t]` = sum over the observation queries `i` (all, or the last
    `window`) and the `G = Hq / Hkv` query heads of KV head `h` of
    `softmax_t(scale * q_i . k_t)` with the causal mask (`t <= i`).
    `scale` defaults to `1/sqrt(D)`.

    ```mlir
    %a = kvcache.accumulated_scores %q, %k window(32)
        : tensor<9x128x64xf32>, tensor<3x128x64xf32> -> tensor<3x128xf32>
    ```
  }];
  let arguments = (ins KVCache_FloatTensor:$queries, KVCache_FloatTensor:$keys,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$window,
                       OptionalAttr<F64Attr>:$scale);
  let results = (outs KVCache_F32Tensor:$result);
  let assemblyFormat = [{
    $queries `,` $keys (`window` `(` $window^ `)`)? (`scale` `(` $scale^ `)`)?
    attr-dict `:` type($queries) `,` type($keys) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// compress
//===----------------------------------------------------------------------===//

def KVCache_CompressOp : KVCache_Op<"compress", [Pure]> {
  let summary = "compress a KV cache to a budget under a policy";
  let description = [{
    The high-level op: `full`, `streaming`, `h2o` or `kvmerger` (see
    `#kvcache.policy`). Results per KV head, with capacity `B` slots: keys,
    values, original positions (the pivot's for merged slots), counts,
    accumulated scores and the number of valid slots. If `L <= B` the cache
    is returned unchanged (zero-padded to `B`); `full` always is.
    `kvmerge-decompose-compress` rewrites it into
    `similarity` + `merge_sets` (or `select_sets`) + `merge`.

    ```mlir
    %k, %v, %pos, %cnt, %sc, %len = kvcache.compress %keys, %values, %scores
        {policy = #kvcache.policy<kvmerger, ratio = 5.000000e-01>}
        : tensor<3x128x64xf16>, tensor<3x128x64xf16>, tensor<3x128xf32>
        -> tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>,
           tensor<3x64xi32>, tensor<3x64xf32>, tensor<3xi32>
    ```
  }];
  let arguments = (ins KVCache_FloatTensor:$keys, KVCache_FloatTensor:$values,
                       KVCache_F32Tensor:$scores, KVCache_PolicyAttr:$policy);
  let results = (outs
    KVCache_FloatTensor:$compressed_keys, KVCache_FloatTensor:$compressed_values,
    KVCache_I32Tensor:$positions, KVCache_I32Tensor:$counts,
    KVCache_F32Tensor:$compressed_scores, KVCache_I32Tensor:$lengths);
  let assemblyFormat = [{
    $keys `,` $values `,` $scores attr-dict
    `:` type($keys) `,` type($values) `,` type($scores) `->` type(results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// append
//===----------------------------------------------------------------------===//

def KVCache_AppendOp : KVCache_Op<"append", [Pure,
    AllElementTypesMatch<["cache", "added", "result"]>]> {
  let summary = "append new tokens right after the valid slots of a cache";
  let description = [{
    A decode step's cache update on a compressed cache: for every head `h`
    with `n = lengths[h]` valid slots (clamped to `[0, P]`), the result holds
    the `n` valid slots, then the `T` added entries, then zeros:
    `result[h, s] = cache[h, s]` for `s < n`, `added[h, s - n]` for
    `n <= s < n + T`, `0` beyond; `new_lengths[h] = n + T`. The result has
    `P + T` slots, so the valid slots stay a prefix and every later step
    masks with the same `lengths` rule. `cache` is `[H, P, ...]` (keys,
    values, or per-slot metadata such as positions), `added` is `[H, T, ...]`.
    `kvmerge-insert-compression` rewrites a decode's
    `tensor.concat(cache, new)` into this op.

    ```mlir
    %k2, %len2 = kvcache.append %cache, %added lengths(%len)
        : tensor<3x64x64xf16>, tensor<3x1x64xf16>, tensor<3xi32>
        -> tensor<3x65x64xf16>, tensor<3xi32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$cache, AnyRankedTensor:$added,
                       KVCache_I32Tensor:$lengths);
  let results = (outs AnyRankedTensor:$result, KVCache_I32Tensor:$new_lengths);
  let assemblyFormat = [{
    $cache `,` $added `lengths` `(` $lengths `)` attr-dict `:` type($cache) `,`
    type($added) `,` type($lengths) `->` type($result) `,` type($new_lengths)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// attention
//===----------------------------------------------------------------------===//

def KVCache_AttentionOp : KVCache_Op<"attention", [
    Pure, AttrSizedOperandSegments, DestinationStyleOpInterface,
    InferTypeOpAdaptor]> {
  let summary = "scaled dot-product attention over a (compressed) cache";
  let description = [{
    `out[j, i] = sum_s softmax_s(scale * q[j,i] . k[h,s] + bias) v[h,s]` for
    query head `j` of KV head `h = j / (Hq / Hkv)` (GQA), over the valid
    slots `s < V[h]`, `V[h] = lengths[h]` (all `S` slots when `lengths` is
    absent).
    `causal`: query `i` of `Lq` sees valid slots `s <= i + V[h] - Lq` (the
    queries are the last `Lq` valid slots).
    `count_bias` (needs `counts`) adds `log(count[h,s])` to each logit.
    `mask` (`[Hm, Lq or 1, S]`, query head `j` reads row `j / (Hq / Hm)`):
    a float mask is added to the logits (after `scale`); an `i1` mask says
    which slots are visible (`true`). This is how raised frontend IR keeps a
    mask that is not provably causal (padding, run-time positions).
    A query that sees no slot (or only `-inf` logits) gets zeros.
    `scale` defaults to `1/sqrt(D)`.

    With a second destination `scores`, the op also returns the accumulated
    attention of every slot, `a[h, s] = sum_{g, i} p[h*G+g, i, s]` (the H2O
    score of `kvcache.accumulated_scores`), from the same probabilities:
    this is how `kvmerge-insert-compression` scores a prefill cache without
    a second `Q . K^T` in the program.

    ```mlir
    %o = kvcache.attention ins(%q, %k, %v : tensor<9x1x64xf16>,
            tensor<3x64x64xf16>, tensor<3x64x64xf16>)
        lengths(%len : tensor<3xi32>) outs(%init : tensor<9x1x64xf16>)
    %o, %a = kvcache.attention ins(%q, %k, %v : ...) outs(%init, %a0 :
        tensor<9x128x64xf32>, tensor<3x128xf32>) causal
    ```
  }];
  let arguments = (ins
    KVCache_FloatTensor:$query, KVCache_FloatTensor:$keys,
    KVCache_FloatTensor:$values,
    Optional<KVCache_I32Tensor>:$lengths, Optional<KVCache_I32Tensor>:$counts,
    Optional<KVCache_MaskTensor>:$mask,
    KVCache_FloatTensor:$init, Optional<KVCache_F32Tensor>:$scores_init,
    OptionalAttr<F64Attr>:$scale, UnitAttr:$causal, UnitAttr:$count_bias);
  let results = (outs KVCache_FloatTensor:$result,
                      Optional<KVCache_F32Tensor>:$scores);
  let assemblyFormat = [{
    `ins` `(` $query `,` $keys `,` $values `:` type($query) `,` type($keys)
      `,` type($values) `)`
    (`lengths` `(` $lengths^ `:` type($lengths) `)`)?
    (`counts` `(` $counts^ `:` type($counts) `)`)?
    (`mask` `(` $mask^ `:` type($mask) `)`)?
    `outs` `(` $init (`,` $scores_init^)? `:` type($init)
      (`,` type($scores_init)^)? `)`
    (`scale` `(` $scale^ `)`)? (`causal` $causal^)?
    (`count_bias` $count_bias^)? attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::MutableOperandRange getDpsInitsMutable() {
      ::mlir::MutableOperandRange inits(getInitMutable());
      if (getScoresInit())
        return ::mlir::MutableOperandRange(
            getOperation(), getInitMutable().getOperandNumber(), 2);
      return inits;
    }
  }];
}

#endif // KVMERGE_DIALECT_KVCACHE_IR_KVCACHEOPS_TD
