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

#endif // KVMERGE_DIALECT_KVCACHE_TRANSFORMS_PASSES_TD
