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
    tokens, slots and chunks: adjacent similarity is a per-link reduction
    in the fixed order every path shares (f64 sums in 16 vector lanes,
    exact IEEE operations, docs/reference.md choice 3);
    merge-set identification selects the `Bm - 1` weakest links by a bitwise
    binary search on order-preserving integer keys (each step a parallel
    count), then turns cut flags into a slot map with a chunked (two-level)
    prefix scan; the merge runs one parallel iteration per output slot.
    The other floating-point reductions carry `fastmath<reassoc, contract>`
    so that LLVM vectorizes them.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def ConvertKVCacheToGPU : Pass<"convert-kvcache-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower kvcache ops to hand-mapped gpu.launch kernels on buffers";
  let description = [{
    Rewrites kvcache ops (after `kvmerge-decompose-compress`) into
    `gpu.launch` kernels over buffers bridged with
    `bufferization.to_buffer` / `to_tensor`, like
    `convert-kvcache-to-loops`:

    * `similarity`: 16 lanes per (head, link), each summing its head-dim
      elements in f64, combined by a `gpu.shuffle xor` butterfly: the
      summation order of every path (docs/reference.md choice 3);
    * `merge_sets` / `select_sets`: one block per head; the bitwise-search
      selection with block-wide counts, the slot map by a block-wide prefix
      scan (`gpu.shuffle up` + workgroup memory);
    * `merge`: per-token range discovery, then one block per (slot, head)
      (pivot by block argmax, distances one warp per member, weighted sums
      with threads over the head dim, f32 accumulation);
    * `attention`: split-K flash decoding, one block per (key chunk, KV head,
      query) with one warp per query head of the GQA group sharing K/V tiles
      staged in workgroup memory, and a combine kernel.

    Ops without a GPU mapping (f64 storage, `accumulated_scores`,
    `attention` with a scores result or dynamic/over-256 head dims) are left
    unchanged for `convert-kvcache-to-loops` (host execution). Kernels read
    host buffers until `kvmerge-gpu-stage-buffers` gives them device copies.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def KVMergeGPUHideLaunches : Pass<"kvmerge-gpu-hide-launches", "::mlir::ModuleOp"> {
  let summary = "Turn gpu.launch_func into calls so buffer deallocation accepts them";
  let description = [{
    The ownership-based buffer deallocation rejects ops with unknown memory
    effects, which `gpu.launch_func` is. This pass rewrites every
    `gpu.launch_func` (grid, block and kernel operands; no async tokens, no
    clusters, no dynamic shared memory) into a `func.call` to a private
    declaration `__kvmerge_gpu_launch_N` with the kernel in the
    `kvmerge.kernel` attribute; `kvmerge-gpu-restore-launches` undoes it.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def KVMergeGPURestoreLaunches : Pass<"kvmerge-gpu-restore-launches", "::mlir::ModuleOp"> {
  let summary = "Undo kvmerge-gpu-hide-launches";
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def KVMergeGPUStageBuffers : Pass<"kvmerge-gpu-stage-buffers", "::mlir::ModuleOp"> {
  let summary = "Give gpu.launch_func kernels device copies of the host buffers they use";
  let description = [{
    After bufferization and deallocation: every maximal run of
    `gpu.launch_func` ops in a block (with only side-effect-free ops or
    `memref.alloc` between them) gets one `gpu.alloc` per host buffer its
    kernels take, a host-to-device `gpu.memcpy` for buffers with host
    contents (not for allocations made inside the run), a device-to-host
    copy after the run for buffers a kernel writes and the host uses later,
    and `gpu.dealloc`. Intermediate buffers of one kvcache op (and of
    consecutive ops) therefore stay on the device. Run `gpu-async-region`
    afterwards so that `gpu-to-llvm` can lower the copies.
  }];
  let dependentDialects = [
    "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect",
  ];
}

def ConvertKVCacheToLinalg : Pass<"convert-kvcache-to-linalg", "::mlir::ModuleOp"> {
  let summary = "Export lowering: kvcache ops to linalg on tensors (no buffers)";
  let description = [{
    Lowers every kvcache op (after `kvmerge-decompose-compress`) to
    `linalg.generic` ops on tensors whose bodies compute one output element
    each, reading the inputs with `tensor.extract` (plus arith/math/scf in
    the bodies); attention becomes a masked-softmax linalg graph. The result
    uses upstream dialects only and stays on tensors, so compilers that take
    linalg-on-tensors (e.g. `iree-compile`) can ingest it; see docs/iree.md.
    `--kvmerge-export-upstream` is the pipeline around it. The slot map costs
    O(L^2) per head here; `convert-kvcache-to-loops` is the fast CPU path.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def KVMergeOutlineParallelLoops : Pass<"kvmerge-outline-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "Outline outermost scf.parallel loops into tasks for the runtime thread pool";
  let description = [{
    Every outermost `scf.parallel` without results (on buffers, after
    bufferization) becomes a private function
    `__kvmerge_parallel_body_N(%begin: index, %end: index, captures...)`
    that runs the linearized iterations `[begin, end)` in an `scf.for` (the
    loop's own nested `scf.parallel` ops stay sequential inside it), and the
    loop itself becomes a call of a private declaration
    `__kvmerge_parallel_launch_N(%n: index, captures...)` whose
    `kvmerge.parallel_body` attribute names the body. Constants used by the
    body are cloned into it instead of captured. Loops with reductions are
    left alone. `kvmerge-lower-parallel-launches` turns the launches into
    calls of the runtime's `kvmerge_parallel_for` after the LLVM conversion.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect",
  ];
}

def KVMergeLowerParallelLaunches : Pass<"kvmerge-lower-parallel-launches", "::mlir::ModuleOp"> {
  let summary = "Turn outlined parallel launches into kvmerge_parallel_for calls (LLVM dialect)";
  let description = [{
    Runs on the LLVM dialect after `kvmerge-outline-parallel-loops` and the
    conversion to LLVM. For every declaration `__kvmerge_parallel_launch_N`
    it adds an internal task `void(i64 begin, i64 end, ptr context)` that
    unpacks the captured values from a struct and calls the body; each call
    of the launch stores its captures into a stack struct (one `llvm.alloca`
    in the function's entry block) and calls
    `kvmerge_parallel_for(n, task, context)` (include/kvmerge/Runtime/ParallelFor.h).
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // KVMERGE_CONVERSION_PASSES_TD
