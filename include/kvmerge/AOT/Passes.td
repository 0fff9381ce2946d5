//===- Passes.td - ahead-of-time artifact passes -----------*- tablegen -*-===//
//
// The two passes around a lowering pipeline that make an ahead-of-time
// artifact's C ABI (include/kvmerge-c/AOT.h, docs/aot.md):
//
//   kvmerge-aot-record-abi          (tensor level, before the pipeline)
//   --kvmerge-lower-to-llvm | --kvmerge-lower-to-nvvm
//   kvmerge-aot-export-abi          (LLVM dialect, after it)
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_AOT_PASSES_TD
#define KVMERGE_AOT_PASSES_TD

include "mlir/Pass/PassBase.td"

def AOTRecordABI : Pass<"kvmerge-aot-record-abi", "::mlir::ModuleOp"> {
  let summary = "Record the public functions' signatures for an AOT artifact";
  let description = [{
    Checks that every public function with a body can be called through the
    artifact C ABI and records the module's ABI, before lowering erases the
    tensor types, as the module attribute `kvmerge.aot.abi`: one
    `{sym_name, function_type}` dictionary per function, in module order.

    Arguments must be ranked tensors without encoding, or scalars, of f16,
    bf16, f32, f64, i8, i32 or i64 (signless or signed); results ranked
    tensors of those types with static shapes (the caller allocates every
    output). Function names must be identifiers (`[A-Za-z_][A-Za-z0-9_.$]*`).
    Anything else is an error naming the function and the value. Tensor
    arguments are marked `bufferization.writable = false`: compiled code
    never writes into a caller's input.
  }];
  let dependentDialects = ["::mlir::bufferization::BufferizationDialect"];
}

def AOTExportABI : Pass<"kvmerge-aot-export-abi", "::mlir::ModuleOp"> {
  let summary = "Emit an AOT artifact's manifest and packed entry points";
  let description = [{
    On the lowered module (LLVM dialect, `_mlir_ciface_NAME` wrappers present),
    for the ABI recorded by `kvmerge-aot-record-abi`, emits what
    libKVMergeAOTRuntime.a reads:

    * `@__kvmerge_aot_entry_N(!llvm.ptr)`: calls `_mlir_ciface_NAME` with the
      arguments that its packed argument array points to (ExecutionEngine's
      convention: `args[i]` points to argument `i`);
    * `@__kvmerge_aot_entries`: the entry points, in manifest order;
    * `@__kvmerge_aot_manifest`: the target and the signatures as text,

    ```
    kvmerge-aot-abi 1
    target cuda sm_90a fatbin
    function compress 3 6
    value in tensor f16 3 2 64 32 tensor<2x64x32xf16>
    ...
    value out tensor i32 1 2 tensor<2xi32>
    end
    ```

    and removes the `kvmerge.aot.abi` attribute.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "What the artifact is built for, as kvmerge_aot_target() reports "
           "it (\"cpu <mcpu>\" or \"cuda <chip> <format>\")">,
  ];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // KVMERGE_AOT_PASSES_TD
