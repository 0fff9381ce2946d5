// The export needs the C interface wrappers of the lowering pipeline.
// RUN: not kvmerge-opt %s --kvmerge-aot-record-abi --kvmerge-lower-to-llvm=emit-c-interface=false --kvmerge-aot-export-abi 2>&1 | FileCheck %s
// CHECK: error: function 'f' has no '_mlir_ciface_f' after lowering (was the pipeline run with emit-c-interface=false?)
func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}
