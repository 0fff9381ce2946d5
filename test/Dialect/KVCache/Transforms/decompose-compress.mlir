// RUN: kvmerge-opt %s -split-input-file --kvmerge-decompose-compress -verify-diagnostics | FileCheck %s

// KVMerger: similarity -> merge_sets -> merge, with the policy's parameters.
// B = ceil(0.5 * 16) = 8, recent = ceil(8 / 4) = 2, middle = 8 - 2 - 2 = 4.
// CHECK-LABEL: func @kvmerger
// CHECK-SAME: (%[[K:.*]]: tensor<2x16x4xf16>, %[[V:.*]]: tensor<2x16x4xf16>, %[[A:.*]]: tensor<2x16xf32>)
// CHECK: %[[S:.*]] = kvcache.similarity %[[K]] : tensor<2x16x4xf16> -> tensor<2x15xf32>
// Default heavy hitters: floor((4 - 1) / 2) = 1, found from the scores.
// CHECK: %[[SL:.*]], %[[LEN:.*]] = kvcache.merge_sets %[[S]] scores(%[[A]] : tensor<2x16xf32>) sink(2) recent(2) middle(4) heavy(1) mode(threshold) eps(8.000000e-01)
// CHECK: %[[MK:.*]], %[[MV:.*]], %[[P:.*]], %[[C:.*]], %[[MS:.*]] = kvcache.merge ins(%[[K]], %[[V]], %[[A]] : {{.*}}) slots(%[[SL]], %[[LEN]] : {{.*}}) outs({{.*}}) {sigma = #kvcache.sigma<paper>}
// CHECK: return %[[MK]], %[[MV]], %[[P]], %[[C]], %[[MS]], %[[LEN]]
func.func @kvmerger(%k: tensor<2x16x4xf16>, %v: tensor<2x16x4xf16>, %a: tensor<2x16xf32>)
    -> (tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5, sink = 2, mode = threshold, eps = 0.8, sigma = paper>}
      : tensor<2x16x4xf16>, tensor<2x16x4xf16>, tensor<2x16xf32>
      -> tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
}

// -----

// H2O: heavy hitters of the middle, no similarity.
// CHECK-LABEL: func @h2o
// CHECK-SAME: (%[[K:.*]]: tensor<2x16x4xf32>, %[[V:.*]]: tensor<2x16x4xf32>, %[[A:.*]]: tensor<2x16xf32>)
// CHECK-NOT: kvcache.similarity
// CHECK: %[[SL:.*]], %[[LEN:.*]] = kvcache.select_sets %[[A]] sink(4) recent(3) middle(3) : tensor<2x16xf32> -> tensor<2x16xi32>, tensor<2xi32>
// CHECK: kvcache.merge ins(%[[K]], %[[V]], %[[A]] : {{.*}}) slots(%[[SL]], %[[LEN]] : {{.*}}){{$}}
func.func @h2o(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2x10x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, slots = 10>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x10x4xf32>, tensor<2x10x4xf32>, tensor<2x10xi32>, tensor<2x10xi32>, tensor<2x10xf32>, tensor<2xi32>
  return %0#0 : tensor<2x10x4xf32>
}

// -----

// StreamingLLM: sink + (B - sink) newest, an empty middle.
// CHECK-LABEL: func @streaming
// CHECK: kvcache.select_sets %{{.*}} sink(4) recent(6) middle(0)
func.func @streaming(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2x10x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, slots = 10>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x10x4xf32>, tensor<2x10x4xf32>, tensor<2x10xi32>, tensor<2x10xi32>, tensor<2x10xf32>, tensor<2xi32>
  return %0#0 : tensor<2x10x4xf32>
}

// -----

// Dynamic cache length with a slot budget: destinations are static, the slot
// map is dynamic.
// CHECK-LABEL: func @dynamic_slots
// CHECK: kvcache.similarity %{{.*}} : tensor<2x?x4xf32> -> tensor<2x?xf32>
// CHECK: kvcache.merge_sets %{{.*}} scores(%{{.*}} : tensor<2x?xf32>) sink(4) recent(4) middle(8) heavy(3) mode(budget) : tensor<2x?xf32> -> tensor<2x?xi32>, tensor<2xi32>
func.func @dynamic_slots(%k: tensor<2x?x4xf32>, %v: tensor<2x?x4xf32>, %a: tensor<2x?xf32>) -> tensor<2x16x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 16>}
      : tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xf32>
      -> tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return %0#0 : tensor<2x16x4xf32>
}

// -----

// Within budget: the canonical identity, no merge.
// CHECK-LABEL: func @within_budget
// CHECK-NOT: kvcache.
func.func @within_budget(%k: tensor<2x6x4xf32>, %v: tensor<2x6x4xf32>, %a: tensor<2x6xf32>) -> tensor<2x8x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x6x4xf32>, tensor<2x6x4xf32>, tensor<2x6xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0 : tensor<2x8x4xf32>
}

// -----

// A ratio budget of a dynamic cache has no static capacity to lower to.
func.func @dynamic_ratio(%k: tensor<2x?x4xf32>, %v: tensor<2x?x4xf32>, %a: tensor<2x?xf32>) -> tensor<2x?x4xf32> {
  // expected-error @+1 {{'kvcache.compress' op a 'ratio' budget needs a static cache length; give the budget in 'slots' for dynamic caches}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5>}
      : tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xf32>
      -> tensor<2x?x4xf32>, tensor<2x?x4xf32>, tensor<2x?xi32>, tensor<2x?xi32>, tensor<2x?xf32>, tensor<2xi32>
  return %0#0 : tensor<2x?x4xf32>
}

// -----

// Spec v1 (heavy = 0): no scores for the slot map, auto sigma is merge's default.
// CHECK-LABEL: func @kvmerger_v1
// CHECK: kvcache.merge_sets %{{.*}} sink(4) recent(4) middle(8) mode(budget) :
// CHECK: kvcache.merge ins({{.*}}) slots({{.*}}) outs({{.*}}){{$}}
func.func @kvmerger_v1(%k: tensor<2x32x4xf32>, %v: tensor<2x32x4xf32>, %a: tensor<2x32xf32>) -> tensor<2x16x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 16, heavy = 0, sigma = auto>}
      : tensor<2x32x4xf32>, tensor<2x32x4xf32>, tensor<2x32xf32>
      -> tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return %0#0 : tensor<2x16x4xf32>
}
