//===- Passes.td - kvmerge conversion passes ---------------*- tablegen -*-===//

#ifndef KVMERGE_CONVERSION_PASSES_TD
#define KVMERGE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertKVCacheToLoops : Pass<"convert-kvcache-to-loops", "::mlir::ModuleOp"> {
  let summary = "Lower kvcache ops to scf/memref/arith/math loops on buffers";
  let description = [{
    Rewrites each kvcache op (after `kvmerge-decompose-compress`) into
    upstream loops over buffers, bridged to the surrounding tensor IR with
    `bufferization.to_buffer` / `bufferization.to_tensor`, so that
    one-shot bufferization finishes the job.

    The work is expressed as parallel loops (`scf.parallel`) over KV heads,
    tokens, slots and chunks: adjacent similarity is a per-link reduction;
    merge-set identification selects the `Bm - 1` weakest links by a bitwise
    binary search on order-preserving integer keys (each step a parallel
    count), then turns cut flags into a slot map with a chunked (two-level)
    prefix scan; the merge runs one parallel iteration per output slot.
    Floating-point reductions carry `fastmath<reassoc, contract>` so that
    LLVM vectorizes them.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

#endif // KVMERGE_CONVERSION_PASSES_TD
