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

def KVCacheInsertCompression
    : Pass<"kvmerge-insert-compression", "::mlir::ModuleOp"> {
  let summary = "Compress the KV caches a prefill returns; mask the caches a decode reads";
  let description = [{
    Works on `kvcache.attention` ops (from `kvmerge-raise-attention` or
    written directly) and the function arguments/results that are their
    caches. A cache is marked with the argument/result attribute
    `kvcache.role = "keys" | "values" | "lengths"`.

    * **Prefill** (a function returning the keys and values an attention
      reads): the attention also returns the accumulated scores of its own
      probabilities (`outs(%o, %scores)`, no second `Q . K^T`), a
      `kvcache.compress` with the pass's policy compresses keys and values,
      the function returns the compressed caches in their place and appends
      four results: `positions`, `counts`, `scores`, `lengths` (each marked
      with `kvcache.role`). Unmarked results that are exactly an
      attention's keys/values are detected automatically, with a remark.
    * **Decode** (an attention reading keys/values arguments marked as
      caches): the attention reads only the valid slots: `lengths(%len)`
      from the argument marked `"lengths"`, which is appended (marked) when
      missing. Unmarked arguments are left alone, with a remark.

    The budget is `budget=0.5` (a ratio: has a `.` or is below 1) or
    `budget=512` (slots, at most 2^31 - 1). Each option is checked on its
    own (the error names it); how they combine is checked by the policy
    attribute's verifier. A module without any attention is an error.

    **Per-layer budgets**: `layer-budgets=0.6,0.4,...` (each a ratio or a
    number of slots, like `budget`) or `budgets-file=path` (a JSON file with
    a `"layer_budgets"` list, as written by `python -m kvmerge.calibrate`):
    the i-th prefill attention of a function (in function order) that is
    compressed gets the i-th budget; the count must match. They replace
    `budget`. `heavy=N` sets the heavy hitters of `kvmerger` (-1: the
    policy's default `floor((Mb - 1) / 2)` of each budget; 0 with
    `sigma=auto` is the spec's version 1).
  }];
  let options = [
    Option<"policy", "policy", "std::string", /*default=*/"\"kvmerger\"",
           "full | streaming | h2o | kvmerger">,
    Option<"budget", "budget", "std::string", /*default=*/"\"0.5\"",
           "a ratio of the cache length (0.5) or a number of slots (512)">,
    Option<"sink", "sink", "int64_t", /*default=*/"4",
           "oldest tokens always kept">,
    Option<"recent", "recent", "int64_t", /*default=*/"-1",
           "newest tokens always kept (-1: ceil(B / 4))">,
    Option<"mode", "mode", "std::string", /*default=*/"\"budget\"",
           "budget | threshold">,
    Option<"eps", "eps", "double", /*default=*/"0.75",
           "similarity threshold (threshold mode)">,
    Option<"sigma", "sigma", "std::string", /*default=*/"\"paper\"",
           "paper | auto | a positive number">,
    Option<"heavy", "heavy", "int64_t", /*default=*/"-1",
           "kvmerger heavy hitters (-1: floor((Mb - 1) / 2))">,
    ListOption<"layerBudgets", "layer-budgets", "std::string",
               "per-layer budgets, one per compressed prefill attention in "
               "function order">,
    Option<"budgetsFile", "budgets-file", "std::string", /*default=*/"\"\"",
           "JSON file with a \"layer_budgets\" list (kvmerge.calibrate)">
  ];
  let dependentDialects = ["::mlir::tensor::TensorDialect",
                           "::kvmerge::kvcache::KVCacheDialect"];
}

def KVCacheOutline : Pass<"kvmerge-outline", "::mlir::ModuleOp"> {
  let summary = "Outline kvcache ops into one private function per distinct op";
  let description = [{
    Moves every `kvcache.compress` and `kvcache.attention` into a private
    function `__kvmerge_<op>_<hash>` and calls it; ops that are identical up
    to their operands (same attributes, operand and result types) share one
    function. A model with 32 identical layers then lowers its compression
    and attention kernels once instead of 32 times (like IREE's dispatch
    deduplication); `--kvmerge-lower-to-llvm` runs it first. Ops with
    dynamically shaped results stay inline.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def KVCacheFuseMerge : Pass<"kvmerge-fuse-merge"> {
  let summary = "Fuse similarity, merge-set identification and merge per KV head";
  let description = [{
    Rewrites `kvcache.merge(slots = kvcache.merge_sets(kvcache.similarity(K)))`
    over the same keys into one `kvcache.fused_merge`, whose lowering is one
    region per KV head streaming that head's keys and values in order.
    `--kvmerge-lower-to-llvm` runs it unless `fuse-merge=false`, which keeps
    the unfused ops as the reference path.
  }];
}

#endif // KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_TD
