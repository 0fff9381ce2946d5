// kvmerge-run on a kvcache op with an unsupported element type (i32 keys):
// the verifier's message with file:line:col, exit code 1, no output file.
// (Shape mismatches of inputs and --device=cuda are covered in errors.mlir,
// malformed .npy inputs in npy-errors.mlir.)

// RUN: rm -rf %t && mkdir -p %t
// RUN: not kvmerge-run %s --function=f --input=2x16x8xi32=1 --input=2x16x8xi32=1 --input=2x16xf32=1 --output=@%t/out.npy 2>&1 | FileCheck %s
// CHECK: kvmerge-run: error: {{.*}}dtype-error.mlir:[[# @LINE + 6]]:10: error: 'kvcache.compress' op operand #0 must be ranked tensor of 16-bit float or bfloat16 type or 32-bit float or 64-bit float values, but got 'tensor<2x16x8xi32>'
// CHECK-NOT: error:
// RUN: not test -e %t/out.npy
// RUN: ls %t | count 0

func.func @f(%k: tensor<2x16x8xi32>, %v: tensor<2x16x8xi32>, %a: tensor<2x16xf32>) -> tensor<2x8x8xi32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xi32>, tensor<2x16x8xi32>, tensor<2x16xf32> -> tensor<2x8x8xi32>, tensor<2x8x8xi32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0 : tensor<2x8x8xi32>
}
