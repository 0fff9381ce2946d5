// A frontend's linear layer: torch-mlir spells `x @ w.T` as a
// `linalg.transpose` of the weight followed by `linalg.matmul`. The CPU
// pipeline generalizes named ops before elementwise fusion, so the transpose
// folds into the matmul's indexing map: no transposed copy of the weight is
// allocated on each call (the only buffer is the caller's out-param).

// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm | FileCheck %s
// RUN: kvmerge-run %s --function=linear --input=2x3xf32=1,2,3,4,5,6 \
// RUN:   --input=4x3xf32=1,0,0,0,1,0,0,0,1,1,1,1 | FileCheck %s --check-prefix=EXEC

// EXEC: result[0]: 2x4xf32=[1 2 3 6][4 5 6 15]

// CHECK-LABEL: llvm.func @linear(
// CHECK-NOT:     llvm.call @malloc
// CHECK:         llvm.return
func.func @linear(%x: tensor<2x3xf32>, %w: tensor<4x3xf32>) -> tensor<2x4xf32> {
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x4xf32>
  %wt = linalg.transpose ins(%w : tensor<4x3xf32>) outs(%e : tensor<3x4xf32>) permutation = [1, 0]
  %z = tensor.empty() : tensor<2x4xf32>
  %f = linalg.fill ins(%cst : f32) outs(%z : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<2x3xf32>, tensor<3x4xf32>)
                     outs(%f : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
