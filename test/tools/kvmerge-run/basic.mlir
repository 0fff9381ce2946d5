// kvmerge-run lowers with the kvmerge pipeline, JITs, and runs one function
// on inline tensors (comma/space lists, brackets, splats, scalars).

// RUN: kvmerge-run %s --function=add --input=2x3xf32=1,2,3,4,5,6 --input=2x3xf32=10 | FileCheck %s --check-prefix=ADD
// ADD: result[0]: 2x3xf32=[11 12 13][14 15 16]

// RUN: kvmerge-run %s --function=add --input="2x3xf32=[1 2 3][4 5 6]" --input="2x3xf32=0.5 0.5 0.5 1 1 1" | FileCheck %s --check-prefix=BRACKETS
// BRACKETS: result[0]: 2x3xf32=[1.5 2.5 3.5][5 6 7]

// RUN: kvmerge-run %s --function=matmul --input=2x3xf32=1,2,3,4,5,6 --input="3x2xf32=[1 0][0 1][1 1]" | FileCheck %s --check-prefix=MATMUL
// MATMUL: result[0]: 2x2xf32=[4 5][10 11]

// A dynamic dimension accepts any size, including 0.
// RUN: kvmerge-run %s --function=colsum --input=3x4xf32=1,2,3,4,5,6,7,8,9,10,11,12 | FileCheck %s --check-prefix=COLSUM
// COLSUM: result[0]: 4xf32=15 18 21 24
// RUN: kvmerge-run %s --function=colsum --input=1x4xf32=-1 | FileCheck %s --check-prefix=COLSUM1
// COLSUM1: result[0]: 4xf32=-1 -1 -1 -1
// RUN: kvmerge-run %s --function=colsum --input=0x4xf32 | FileCheck %s --check-prefix=COLSUM0
// COLSUM0: result[0]: 4xf32=0 0 0 0

// Full reduction to a rank-0 tensor; i64 beyond 32 bits.
// RUN: kvmerge-run %s --function=total --input=2x3xi64=1,2,3,4,5,9000000000 | FileCheck %s --check-prefix=TOTAL
// TOTAL: result[0]: i64=9000000015

// Several results; strided slices (copied with the runtime's memrefCopy).
// RUN: kvmerge-run %s --function=slices --input=2x4xf32=1,2,3,4,5,6,7,8 | FileCheck %s --check-prefix=SLICES
// SLICES: result[0]: 2x2xf32=[2 4][6 8]
// SLICES-NEXT: result[1]: 4xf32=5 6 7 8

// A scalar argument is passed as a rank-0 value.
// RUN: kvmerge-run %s --function=scale --input=4xf32=1,2,3,4 --input=f32=2.5 | FileCheck %s --check-prefix=SCALE
// SCALE: result[0]: 4xf32=2.5 5 7.5 10

// Compiled code never writes into inputs: `outs(%a)` would otherwise
// accumulate into %a over the warm-up and the three timed runs.
// RUN: kvmerge-run %s --function=inplace --input=4xf32=1,2,3,4 --input=4xf32=10 --benchmark-repetitions=3 | FileCheck %s --check-prefix=INPLACE
// INPLACE: result[0]: 4xf32=11 12 13 14

// Any JIT optimization level gives the same answer; the module can come
// from stdin.
// RUN: kvmerge-run %s --function=add --input=2x3xf32=1,2,3,4,5,6 --input=2x3xf32=10 --opt-level=0 | FileCheck %s --check-prefix=ADD
// RUN: kvmerge-run --function=add --input=2x3xf32=1,2,3,4,5,6 --input=2x3xf32=10 < %s | FileCheck %s --check-prefix=ADD

// Functions without results, and a 3-D result (nested brackets).
// RUN: kvmerge-run %s --function=nothing --input=4xf32=1 | count 0
// RUN: kvmerge-run %s --function=iota3d | FileCheck %s --check-prefix=IOTA
// IOTA: result[0]: 2x2x2xi32={{\[\[}}0 1][2 3]]{{\[\[}}4 5][6 7]]

// --output=- prints; --print-max-elements truncates.
// RUN: kvmerge-run %s --function=iota3d --output=- --print-max-elements=3 | FileCheck %s --check-prefix=TRUNC
// TRUNC: result[0]: 2x2x2xi32={{\[\[}}0 1][2 ...{{$}}

func.func @add(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %e = tensor.empty() : tensor<2x3xf32>
  %0 = linalg.add ins(%a, %b : tensor<2x3xf32>, tensor<2x3xf32>)
                  outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

func.func @matmul(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>) -> tensor<2x2xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<2x2xf32>) -> tensor<2x2xf32>
  %0 = linalg.matmul ins(%a, %b : tensor<2x3xf32>, tensor<3x2xf32>)
                     outs(%f : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %0 : tensor<2x2xf32>
}

func.func @colsum(%a: tensor<?x4xf32>) -> tensor<4xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %0 = linalg.reduce ins(%a : tensor<?x4xf32>) outs(%f : tensor<4xf32>)
                     dimensions = [0]
    (%x: f32, %acc: f32) {
      %s = arith.addf %x, %acc : f32
      linalg.yield %s : f32
    }
  return %0 : tensor<4xf32>
}

func.func @total(%a: tensor<2x3xi64>) -> tensor<i64> {
  %z = arith.constant 0 : i64
  %e = tensor.empty() : tensor<i64>
  %f = linalg.fill ins(%z : i64) outs(%e : tensor<i64>) -> tensor<i64>
  %0 = linalg.reduce ins(%a : tensor<2x3xi64>) outs(%f : tensor<i64>)
                     dimensions = [0, 1]
    (%x: i64, %acc: i64) {
      %s = arith.addi %x, %acc : i64
      linalg.yield %s : i64
    }
  return %0 : tensor<i64>
}

func.func @slices(%a: tensor<2x4xf32>) -> (tensor<2x2xf32>, tensor<4xf32>) {
  %s = tensor.extract_slice %a[0, 1] [2, 2] [1, 2]
      : tensor<2x4xf32> to tensor<2x2xf32>
  %r = tensor.extract_slice %a[1, 0] [1, 4] [1, 1]
      : tensor<2x4xf32> to tensor<4xf32>
  return %s, %r : tensor<2x2xf32>, tensor<4xf32>
}

func.func @scale(%a: tensor<4xf32>, %s: f32) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = linalg.generic {
      indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
      iterator_types = ["parallel"]}
      ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %y = arith.mulf %x, %s : f32
    linalg.yield %y : f32
  } -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

func.func @inplace(%a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<4xf32> {
  %0 = linalg.add ins(%a, %b : tensor<4xf32>, tensor<4xf32>)
                  outs(%a : tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

func.func @nothing(%a: tensor<4xf32>) {
  return
}

func.func @iota3d() -> tensor<2x2x2xi32> {
  %c = arith.constant dense<[[[0, 1], [2, 3]], [[4, 5], [6, 7]]]> : tensor<2x2x2xi32>
  return %c : tensor<2x2x2xi32>
}
