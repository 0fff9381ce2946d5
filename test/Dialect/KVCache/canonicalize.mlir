// RUN: kvmerge-opt %s -split-input-file -canonicalize | FileCheck %s

// A `full` policy is the identity: the cache passes through untouched, every
// slot is its own token.
// CHECK-LABEL: func @full_is_identity
// CHECK-SAME: (%[[K:.*]]: tensor<2x6x4xf16>, %[[V:.*]]: tensor<2x6x4xf16>, %[[A:.*]]: tensor<2x6xf32>)
func.func @full_is_identity(%k: tensor<2x6x4xf16>, %v: tensor<2x6x4xf16>, %a: tensor<2x6xf32>)
    -> (tensor<2x6x4xf16>, tensor<2x6x4xf16>, tensor<2x6xi32>, tensor<2x6xi32>, tensor<2x6xf32>, tensor<2xi32>) {
  // CHECK-NOT: kvcache.compress
  // CHECK-DAG: %[[LEN:.*]] = arith.constant dense<6> : tensor<2xi32>
  // CHECK-DAG: %[[CNT:.*]] = arith.constant dense<1> : tensor<2x6xi32>
  // CHECK: %[[POS:.*]] = tensor.generate
  // CHECK-NEXT: ^bb0(%{{.*}}: index, %[[S:.*]]: index):
  // CHECK-NEXT:   %[[I:.*]] = arith.index_cast %[[S]] : index to i32
  // CHECK-NEXT:   tensor.yield %[[I]] : i32
  // CHECK: return %[[K]], %[[V]], %[[POS]], %[[CNT]], %[[A]], %[[LEN]]
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full>}
      : tensor<2x6x4xf16>, tensor<2x6x4xf16>, tensor<2x6xf32>
      -> tensor<2x6x4xf16>, tensor<2x6x4xf16>, tensor<2x6xi32>, tensor<2x6xi32>, tensor<2x6xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x6x4xf16>, tensor<2x6x4xf16>, tensor<2x6xi32>, tensor<2x6xi32>, tensor<2x6xf32>, tensor<2xi32>
}

// -----

// A cache of 6 tokens under a budget of 8 slots is already compressed: it is
// zero-padded to the capacity, with positions/counts masked past L.
// CHECK-LABEL: func @within_budget_pads
// CHECK-SAME: (%[[K:.*]]: tensor<2x6x4xf32>, %[[V:.*]]: tensor<2x6x4xf32>, %[[A:.*]]: tensor<2x6xf32>)
func.func @within_budget_pads(%k: tensor<2x6x4xf32>, %v: tensor<2x6x4xf32>, %a: tensor<2x6xf32>)
    -> (tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>) {
  // CHECK-NOT: kvcache.compress
  // CHECK-DAG: %[[KP:.*]] = tensor.pad %[[K]] low[0, 0, 0] high[0, 2, 0]
  // CHECK-DAG: %[[VP:.*]] = tensor.pad %[[V]] low[0, 0, 0] high[0, 2, 0]
  // CHECK-DAG: %[[AP:.*]] = tensor.pad %[[A]] low[0, 0] high[0, 2]
  // CHECK-DAG: %[[POS:.*]] = tensor.generate
  // CHECK-DAG: %[[CNT:.*]] = tensor.generate
  // CHECK-DAG: %[[LEN:.*]] = arith.constant dense<6> : tensor<2xi32>
  // CHECK: return %[[KP]], %[[VP]], %[[POS]], %[[CNT]], %[[AP]], %[[LEN]]
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x6x4xf32>, tensor<2x6x4xf32>, tensor<2x6xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
}

// -----

// Over budget: nothing to fold.
// CHECK-LABEL: func @over_budget_stays
// CHECK: kvcache.compress {{.*}} {policy = #kvcache.policy<h2o, slots = 8, sink = 1>}
func.func @over_budget_stays(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>)
    -> (tensor<2x8x4xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 8, sink = 1>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0, %0#5 : tensor<2x8x4xf32>, tensor<2xi32>
}

// -----

// Dynamic lengths are decided at run time: no fold.
// CHECK-LABEL: func @dynamic_stays
// CHECK: kvcache.compress
func.func @dynamic_stays(%k: tensor<2x?x4xf32>, %v: tensor<2x?x4xf32>, %a: tensor<2x?xf32>) -> tensor<2xi32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#5 : tensor<2xi32>
}

// -----

// An unused compress disappears (it is Pure).
// CHECK-LABEL: func @dead
// CHECK-NOT: kvcache
func.func @dead(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return
}

// -----

// `full` on a dynamic cache: the cache itself, positions 0..L-1, counts 1,
// lengths L (read at run time).
// CHECK-LABEL: func @full_dynamic
// CHECK-SAME: (%[[K:.*]]: tensor<2x?x4xf16>, %[[V:.*]]: tensor<2x?x4xf16>, %[[A:.*]]: tensor<2x?xf32>)
// CHECK-NOT: kvcache.compress
// CHECK-DAG: %[[L:.*]] = tensor.dim %[[K]], %{{.*}} : tensor<2x?x4xf16>
// CHECK-DAG: %[[LI:.*]] = arith.index_cast %[[L]] : index to i32
// CHECK: %[[POS:.*]] = tensor.generate %[[L]]
// CHECK: %[[CNT:.*]] = tensor.generate %[[L]]
// CHECK: %[[LEN:.*]] = tensor.generate
// CHECK-NEXT: ^bb0
// CHECK-NEXT: tensor.yield %[[LI]] : i32
// CHECK: return %[[K]], %[[V]], %[[POS]], %[[CNT]], %[[A]], %[[LEN]]
func.func @full_dynamic(%k: tensor<2x?x4xf16>, %v: tensor<2x?x4xf16>, %a: tensor<2x?xf32>)
    -> (tensor<2x?x4xf16>, tensor<2x?x4xf16>, tensor<2x?xi32>, tensor<2x?xi32>, tensor<2x?xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full>}
      : tensor<2x?x4xf16>, tensor<2x?x4xf16>, tensor<2x?xf32>
      -> tensor<2x?x4xf16>, tensor<2x?x4xf16>, tensor<2x?xi32>, tensor<2x?xi32>, tensor<2x?xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x?x4xf16>, tensor<2x?x4xf16>, tensor<2x?xi32>, tensor<2x?xi32>, tensor<2x?xf32>, tensor<2xi32>
}
