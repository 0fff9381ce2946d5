// RUN: kvmerge-opt %s -split-input-file --kvmerge-fuse-merge | FileCheck %s

// similarity -> merge_sets -> merge of the same keys becomes one fused op.
// CHECK-LABEL: func @chain
// CHECK-SAME: (%[[K:.*]]: tensor<2x16x4xf16>, %[[V:.*]]: tensor<2x16x4xf16>, %[[A:.*]]: tensor<2x16xf32>)
// CHECK-NOT: kvcache.similarity
// CHECK-NOT: kvcache.merge_sets
// CHECK: = kvcache.fused_merge ins(%[[K]], %[[V]], %[[A]] : tensor<2x16x4xf16>, tensor<2x16x4xf16>, tensor<2x16xf32>) outs({{.*}} : tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>) sink(2) recent(2) middle(4) mode(threshold) eps(8.000000e-01) {sigma = #kvcache.sigma<paper>}
// CHECK-NOT: kvcache.merge ins
func.func @chain(%k: tensor<2x16x4xf16>, %v: tensor<2x16x4xf16>, %a: tensor<2x16xf32>)
    -> (tensor<2x8x4xf16>, tensor<2xi32>) {
  %s = kvcache.similarity %k : tensor<2x16x4xf16> -> tensor<2x15xf32>
  %slots, %len = kvcache.merge_sets %s sink(2) recent(2) middle(4) mode(threshold) eps(0.8)
      : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  %k0 = tensor.empty() : tensor<2x8x4xf16>
  %p0 = tensor.empty() : tensor<2x8xi32>
  %s0 = tensor.empty() : tensor<2x8xf32>
  %r:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x4xf16>, tensor<2x16x4xf16>, tensor<2x16xf32>)
      slots(%slots, %len : tensor<2x16xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
      {sigma = #kvcache.sigma<paper>}
  return %r#0, %len : tensor<2x8x4xf16>, tensor<2xi32>
}

// -----

// Sets of other keys (or an eviction slot map) are not fused.
// CHECK-LABEL: func @other_keys
// CHECK: kvcache.similarity
// CHECK: kvcache.merge ins
// CHECK-NOT: fused_merge
func.func @other_keys(%k: tensor<2x16x4xf32>, %k2: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2x8x4xf32> {
  %s = kvcache.similarity %k2 : tensor<2x16x4xf32> -> tensor<2x15xf32>
  %slots, %len = kvcache.merge_sets %s sink(2) recent(2) middle(4) mode(budget)
      : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  %k0 = tensor.empty() : tensor<2x8x4xf32>
  %p0 = tensor.empty() : tensor<2x8xi32>
  %s0 = tensor.empty() : tensor<2x8xf32>
  %r:5 = kvcache.merge ins(%k, %k, %a : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>)
      slots(%slots, %len : tensor<2x16xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return %r#0 : tensor<2x8x4xf32>
}

// -----

// A dynamic Hkv (issue 16): the fused op's lengths destination takes its
// size from the keys (was: 'tensor.empty' op incorrect number of dynamic sizes).
// CHECK-LABEL: func @dynamic_heads
// CHECK-SAME: (%[[K:[^:]*]]: tensor<?x16x4xf32>
// CHECK: %[[H:.*]] = tensor.dim %[[K]], %{{.*}} : tensor<?x16x4xf32>
// CHECK: %[[L:.*]] = tensor.empty(%[[H]]) : tensor<?xi32>
// CHECK: kvcache.fused_merge {{.*}}, %[[L]] : {{.*}}tensor<?xi32>)
func.func @dynamic_heads(%k: tensor<?x16x4xf32>, %a: tensor<?x16xf32>, %k0: tensor<?x8x4xf32>,
                         %p0: tensor<?x8xi32>, %s0: tensor<?x8xf32>) -> (tensor<?x8x4xf32>, tensor<?xi32>) {
  %s = kvcache.similarity %k : tensor<?x16x4xf32> -> tensor<?x15xf32>
  %slots, %len = kvcache.merge_sets %s sink(2) recent(2) middle(4) mode(budget)
      : tensor<?x15xf32> -> tensor<?x16xi32>, tensor<?xi32>
  %r:5 = kvcache.merge ins(%k, %k, %a : tensor<?x16x4xf32>, tensor<?x16x4xf32>, tensor<?x16xf32>)
      slots(%slots, %len : tensor<?x16xi32>, tensor<?xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<?x8x4xf32>, tensor<?x8x4xf32>, tensor<?x8xi32>, tensor<?x8xi32>, tensor<?x8xf32>)
  return %r#0, %len : tensor<?x8x4xf32>, tensor<?xi32>
}
