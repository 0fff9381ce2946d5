// RUN: kvmerge-opt %s -split-input-file --kvmerge-outline | FileCheck %s

// Two identical compress ops (two layers) share one private function; a
// different policy gets its own.
// CHECK-LABEL: func @two_layers
// CHECK: %[[A:.*]]:6 = call @[[F:__kvmerge_compress_[0-9a-f]+]](%arg0, %arg1, %arg2)
// CHECK: %[[B:.*]]:6 = call @[[F]](%arg3, %arg4, %arg5)
// CHECK: %[[C:.*]]:6 = call @[[G:__kvmerge_compress_[0-9a-f]+]](%arg0, %arg1, %arg2)
// CHECK: return %[[A]]#5, %[[B]]#5, %[[C]]#5
// CHECK: func private @[[F]](%{{.*}}: tensor<2x16x4xf32>, %{{.*}}: tensor<2x16x4xf32>, %{{.*}}: tensor<2x16xf32>)
// CHECK-NEXT: kvcache.compress {{.*}} {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
// CHECK: func private @[[G]]
// CHECK-NEXT: kvcache.compress {{.*}} {policy = #kvcache.policy<h2o, slots = 8, sink = 1>}
// CHECK-NOT: func private @__kvmerge_compress
func.func @two_layers(%k0: tensor<2x16x4xf32>, %v0: tensor<2x16x4xf32>, %a0: tensor<2x16xf32>,
                      %k1: tensor<2x16x4xf32>, %v1: tensor<2x16x4xf32>, %a1: tensor<2x16xf32>)
    -> (tensor<2xi32>, tensor<2xi32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k0, %v0, %a0 {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  %1:6 = kvcache.compress %k1, %v1, %a1 {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  %2:6 = kvcache.compress %k0, %v0, %a0 {policy = #kvcache.policy<h2o, slots = 8, sink = 1>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#5, %1#5, %2#5 : tensor<2xi32>, tensor<2xi32>, tensor<2xi32>
}

// -----

// Dynamic result shapes stay inline.
// CHECK-LABEL: func @dynamic
// CHECK: kvcache.compress
func.func @dynamic(%k: tensor<2x?x4xf32>, %v: tensor<2x?x4xf32>, %a: tensor<2x?xf32>) -> tensor<2x?x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full>}
      : tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xf32>
      -> tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xi32>, tensor<2x?xi32>, tensor<2x?xf32>, tensor<2xi32>
  return %0#0 : tensor<2x?x4xf32>
}
