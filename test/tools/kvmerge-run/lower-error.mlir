// The whole module is lowered at once: an op that the pipeline cannot lower
// fails the run with MLIR's diagnostics, and writes no output.

// RUN: rm -rf %t && mkdir -p %t
// RUN: not kvmerge-run %s --function=ok --input=4xf32=1 --output=@%t/out.npy 2>&1 | FileCheck %s
// CHECK: kvmerge-run: error: failed to lower '{{.*}}lower-error.mlir' to LLVM:
// CHECK-NEXT: lower-error.mlir:[[# @LINE + 9]]:{{[0-9]+}}: error:
// CHECK-NEXT: tosa.add
// RUN: not test -e %t/out.npy

func.func @ok(%a: tensor<4xf32>) -> tensor<4xf32> {
  return %a : tensor<4xf32>
}

func.func @unlowerable(%a: tensor<4xf32>) -> tensor<4xf32> {
  %0 = tosa.add %a, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}
