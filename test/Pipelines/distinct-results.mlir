// A function that returns one tensor twice (a whole model's per-layer slot
// metadata after CSE; a cache view returned for two layers) gets one buffer
// per result: the CPU pipeline copies repeated results
// (kvmerge-distinct-results) instead of crashing in
// buffer-results-to-out-params.
// RUN: kvmerge-opt %s --kvmerge-distinct-results | FileCheck %s
// RUN: kvmerge-run %s --function=twice --input=4xf32=1,2,3,4 | FileCheck %s --check-prefix=EXEC
// RUN: kvmerge-run %s --function=constant_twice | FileCheck %s --check-prefix=CONST

// CHECK-LABEL: func @twice
// CHECK: %[[G:.*]] = linalg.generic
// CHECK: %[[C:.*]] = bufferization.alloc_tensor() copy(%[[G]])
// CHECK: return %[[G]], %[[C]], %{{.*}}
// EXEC-COUNT-2: 4xf32=2 4 6 8
// EXEC: 4xf32=1 2 3 4
func.func @twice(%a: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
  %e = tensor.empty() : tensor<4xf32>
  %g = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%a : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %y = arith.addf %x, %x : f32
    linalg.yield %y : f32
  } -> tensor<4xf32>
  return %g, %g, %a : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
}

// CONST-COUNT-2: 4xi32=0 1 2 3
func.func @constant_twice() -> (tensor<4xi32>, tensor<4xi32>) {
  %c = arith.constant dense<[0, 1, 2, 3]> : tensor<4xi32>
  return %c, %c : tensor<4xi32>, tensor<4xi32>
}
