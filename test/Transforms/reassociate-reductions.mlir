// RUN: kvmerge-opt %s -split-input-file --kvmerge-reassociate-reductions | FileCheck %s

// A matmul as a frontend spells it after generalization (the weight read
// transposed): its multiply and add may be reassociated and contracted.
// CHECK-LABEL: func @matmul
// CHECK: linalg.generic
// CHECK:   %[[M:.*]] = arith.mulf %{{.*}}, %{{.*}} fastmath<reassoc,contract> : f32
// CHECK:   arith.addf %{{.*}}, %[[M]] fastmath<reassoc,contract> : f32
#a = affine_map<(i, j, k) -> (i, k)>
#b = affine_map<(i, j, k) -> (j, k)>
#c = affine_map<(i, j, k) -> (i, j)>
func.func @matmul(%x: tensor<4x8xf32>, %w: tensor<16x8xf32>, %z: tensor<4x16xf32>) -> tensor<4x16xf32> {
  %r = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : tensor<4x8xf32>, tensor<16x8xf32>) outs(%z : tensor<4x16xf32>) {
  ^bb0(%p: f32, %q: f32, %acc: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<4x16xf32>
  return %r : tensor<4x16xf32>
}

// -----

// Flags already there are kept (nnan stays); every float op of the body
// gets the two flags, the widening of f16 inputs too (no effect on it).
// CHECK-LABEL: func @sum_of_squares
// CHECK:   arith.extf %{{.*}} fastmath<reassoc,contract> : f16 to f32
// CHECK:   arith.mulf {{.*}} fastmath<reassoc,nnan,contract> : f32
// CHECK:   arith.addf {{.*}} fastmath<reassoc,contract> : f32
func.func @sum_of_squares(%x: tensor<4x8xf16>, %z: tensor<4xf32>) -> tensor<4xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>],
                       iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<4x8xf16>) outs(%z : tensor<4xf32>) {
  ^bb0(%p: f16, %acc: f32):
    %e = arith.extf %p : f16 to f32
    %m = arith.mulf %e, %e fastmath<nnan> : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// Elementwise generics and float ops outside linalg keep IEEE order.
// CHECK-LABEL: func @untouched
// CHECK-NOT: fastmath
// CHECK: return
func.func @untouched(%x: tensor<4xf32>, %y: tensor<4xf32>, %a: f32, %b: f32) -> (tensor<4xf32>, f32) {
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>],
                       iterator_types = ["parallel"]}
      ins(%x : tensor<4xf32>) outs(%y : tensor<4xf32>) {
  ^bb0(%p: f32, %q: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %m, %q : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  %c = arith.addf %a, %b : f32
  return %r, %c : tensor<4xf32>, f32
}
