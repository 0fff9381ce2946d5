//===- Passes.td - kvmerge transforms of upstream IR -------*- tablegen -*-===//
//
// Passes that work on the upstream tensor programs frontends emit (linalg on
// tensors), not on the kvcache dialect.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_TRANSFORMS_PASSES
#define KVMERGE_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def KVMergeFuseElementwise : Pass<"kvmerge-fuse-elementwise"> {
  let summary = "Fuse elementwise linalg ops without recomputing them";
  let description = [{
    Upstream's elementwise fusion (`linalg-fuse-elementwise-ops`) with a cost
    rule for whole models: a producer `linalg.generic` (all loops parallel,
    one use) is fused into its consumer only when that does not repeat its
    work, i.e. when the consumer reads the producer's result through a
    permutation of all of its own loops (each element once), or when the
    producer computes nothing (its body only yields block arguments: a
    transpose, broadcast or copy, which becomes an indexing map).

    Upstream fuses every single-use producer, also into a contraction that
    reads each element many times: a model's RMSNorm `rsqrt` or SiLU `exp`
    then runs once per multiply-add of the following matmul (49152 times
    per hidden element in a SmolLM2 `lm_head`). Here those stay separate
    loop nests, while a frontend's weight transposes still fold into the
    matmuls that read them.

    Reshapes are propagated by expansion as upstream does, and the same
    canonicalizations run.

    Fusion runs in rounds: an op created in the current round is not fused
    as a producer before the next round, so a chain of n elementwise ops is
    fused in disjoint pairs, halving every round (O(n log n) cloned body ops
    instead of the O(n^2) of fusing one link at a time). A fused op may
    still absorb producers within its round, so a DAG that can only be
    fused from its end (every value used by the next two ops) fuses in one
    round as before (still O(n^2) clones there).
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::affine::AffineDialect"];
}

def KVMergeGenerateToLinalg : Pass<"kvmerge-generate-to-linalg"> {
  let summary = "Rewrite tensor.generate as a linalg.generic over linalg.index";
  let description = [{
    `tensor.generate` (which kvcache folds produce for the positions, counts
    and lengths of a cache that needs no compression) becomes
    `tensor.empty` + a `linalg.generic` whose body reads the indices with
    `linalg.index` and yields the generator's value. IREE's input pipeline
    does not legalize `tensor.generate`; the upstream export runs this so
    that `iree-compile` takes every policy, `full` included.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def KVMergeReassociateReductions
    : Pass<"kvmerge-reassociate-reductions"> {
  let summary = "Let the float reductions of linalg.generic ops be "
                "reassociated and contracted";
  let description = [{
    Sets `fastmath<reassoc, contract>` on the floating-point arith ops in
    the body of every `linalg.generic` that has a reduction iterator (the
    matmuls, matrix-vector products and norms a frontend emits). Without
    it, each dot product is a chain of IEEE additions in source order, one
    per element and each waiting for the last: LLVM may neither vectorize
    it nor form FMAs, and a model's matmuls run at a fraction of the
    machine. With it, LLVM sums in vector lanes (a different, usually more
    accurate, order: like any BLAS).

    Only `linalg.generic` bodies are touched: kvcache ops are lowered
    later by kvmerge's own loops, whose summation orders (the similarity's
    exact f64 rule) are part of the contract. The CPU pipeline runs it by
    default (`reassociate-reductions=false` keeps source order).
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect"];
}

def KVMergeApproximateMath : Pass<"kvmerge-approximate-math"> {
  let summary = "Expand f32 math.exp into upstream's polynomial approximation";
  let description = [{
    Rewrites every f32 `math.exp` (scalar or vector) with upstream MLIR's
    polynomial approximation (`populateMathPolynomialApproximationPatterns`
    restricted to `exp`): a range reduction and a polynomial in arith ops,
    exact at the special values the kvcache kernels rely on (`exp(-inf) = 0`
    for masked logits, overflow to `+inf`, underflow to 0, NaN propagated).

    Without it, `math.exp` becomes a call of the C library's `expf` per
    element, which LLVM cannot vectorize and whose underflow path (taken by
    the Gaussian weights of far-away keys and by softmax tails) is slow. The
    CPU pipeline runs it before the conversion to LLVM; f64 `exp` keeps the
    library call.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::vector::VectorDialect"];
}

#endif // KVMERGE_TRANSFORMS_PASSES
