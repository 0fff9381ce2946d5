// Round-trip of every kvcache op and attribute: custom form, then the generic
// form parsed back, must print the same custom form.
// RUN: kvmerge-opt %s -split-input-file | kvmerge-opt -split-input-file | FileCheck %s
// RUN: kvmerge-opt %s -split-input-file --mlir-print-op-generic | kvmerge-opt -split-input-file | FileCheck %s

// CHECK-LABEL: func @similarity
// CHECK-SAME: (%[[K:.*]]: tensor<3x128x64xf16>, %[[KD:.*]]: tensor<3x?x64xbf16>)
func.func @similarity(%k: tensor<3x128x64xf16>, %kd: tensor<3x?x64xbf16>) -> (tensor<3x127xf32>, tensor<3x?xf32>) {
  // CHECK: %[[S:.*]] = kvcache.similarity %[[K]] : tensor<3x128x64xf16> -> tensor<3x127xf32>
  %s = kvcache.similarity %k : tensor<3x128x64xf16> -> tensor<3x127xf32>
  // CHECK: %[[SD:.*]] = kvcache.similarity %[[KD]] : tensor<3x?x64xbf16> -> tensor<3x?xf32>
  %sd = kvcache.similarity %kd : tensor<3x?x64xbf16> -> tensor<3x?xf32>
  // CHECK: return %[[S]], %[[SD]]
  return %s, %sd : tensor<3x127xf32>, tensor<3x?xf32>
}

// -----

// CHECK-LABEL: func @merge_sets
// CHECK-SAME: (%[[S:.*]]: tensor<3x127xf32>)
func.func @merge_sets(%s: tensor<3x127xf32>) -> (tensor<3x128xi32>, tensor<3xi32>, tensor<3x128xi32>) {
  // CHECK: %[[SL:.*]], %[[LEN:.*]] = kvcache.merge_sets %[[S]] sink(4) recent(16) middle(44) mode(budget) : tensor<3x127xf32> -> tensor<3x128xi32>, tensor<3xi32>
  %slots, %len = kvcache.merge_sets %s sink(4) recent(16) middle(44) mode(budget)
      : tensor<3x127xf32> -> tensor<3x128xi32>, tensor<3xi32>
  // CHECK: kvcache.merge_sets %[[S]] sink(0) recent(0) middle(8) mode(threshold) eps(-5.000000e-01) :
  %t:2 = kvcache.merge_sets %s sink(0) recent(0) middle(8) mode(threshold) eps(-0.5)
      : tensor<3x127xf32> -> tensor<3x128xi32>, tensor<3xi32>
  return %slots, %len, %t#0 : tensor<3x128xi32>, tensor<3xi32>, tensor<3x128xi32>
}

// -----

// CHECK-LABEL: func @select_sets
// CHECK-SAME: (%[[A:.*]]: tensor<3x?xf32>)
func.func @select_sets(%a: tensor<3x?xf32>) -> (tensor<3x?xi32>, tensor<3xi32>) {
  // CHECK: kvcache.select_sets %[[A]] sink(4) recent(60) middle(0) : tensor<3x?xf32> -> tensor<3x?xi32>, tensor<3xi32>
  %slots, %len = kvcache.select_sets %a sink(4) recent(60) middle(0)
      : tensor<3x?xf32> -> tensor<3x?xi32>, tensor<3xi32>
  return %slots, %len : tensor<3x?xi32>, tensor<3xi32>
}

// -----

// CHECK-LABEL: func @merge
func.func @merge(%k: tensor<3x128x64xf16>, %v: tensor<3x128x64xf16>, %a: tensor<3x128xf32>,
                 %slots: tensor<3x128xi32>, %len: tensor<3xi32>)
    -> (tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>) {
  %k0 = tensor.empty() : tensor<3x64x64xf16>
  %v0 = tensor.empty() : tensor<3x64x64xf16>
  %p0 = tensor.empty() : tensor<3x64xi32>
  %c0 = tensor.empty() : tensor<3x64xi32>
  %s0 = tensor.empty() : tensor<3x64xf32>
  // CHECK: %[[MK:.*]], %[[MV:.*]], %[[P:.*]], %[[C:.*]], %[[MS:.*]] = kvcache.merge ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<3x128x64xf16>, tensor<3x128x64xf16>, tensor<3x128xf32>) slots(%{{.*}}, %{{.*}} : tensor<3x128xi32>, tensor<3xi32>) outs(%{{.*}} : tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>)
  // CHECK-NOT: sigma
  %r:5 = kvcache.merge ins(%k, %v, %a : tensor<3x128x64xf16>, tensor<3x128x64xf16>, tensor<3x128xf32>)
      slots(%slots, %len : tensor<3x128xi32>, tensor<3xi32>)
      outs(%k0, %v0, %p0, %c0, %s0 : tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>)
  // CHECK: kvcache.merge {{.*}} {sigma = #kvcache.sigma<paper>}
  %q:5 = kvcache.merge ins(%k, %v, %a : tensor<3x128x64xf16>, tensor<3x128x64xf16>, tensor<3x128xf32>)
      slots(%slots, %len : tensor<3x128xi32>, tensor<3xi32>)
      outs(%k0, %v0, %p0, %c0, %s0 : tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>)
      {sigma = #kvcache.sigma<paper>}
  // CHECK: kvcache.merge {{.*}} {sigma = #kvcache.sigma<2.500000e-01>}
  %f:5 = kvcache.merge ins(%k, %v, %a : tensor<3x128x64xf16>, tensor<3x128x64xf16>, tensor<3x128xf32>)
      slots(%slots, %len : tensor<3x128xi32>, tensor<3xi32>)
      outs(%k0, %v0, %p0, %c0, %s0 : tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>)
      {sigma = #kvcache.sigma<0.25>}
  // CHECK: return %[[MK]], %[[MV]], %[[P]], %[[C]], %[[MS]]
  return %r#0, %r#1, %r#2, %r#3, %r#4 : tensor<3x64x64xf16>, tensor<3x64x64xf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>
}

// -----

// CHECK-LABEL: func @accumulated_scores
// CHECK-SAME: (%[[Q:.*]]: tensor<9x128x64xf32>, %[[K:.*]]: tensor<3x128x64xf32>)
func.func @accumulated_scores(%q: tensor<9x128x64xf32>, %k: tensor<3x128x64xf32>) -> (tensor<3x128xf32>, tensor<3x128xf32>) {
  // CHECK: kvcache.accumulated_scores %[[Q]], %[[K]] : tensor<9x128x64xf32>, tensor<3x128x64xf32> -> tensor<3x128xf32>
  %a = kvcache.accumulated_scores %q, %k : tensor<9x128x64xf32>, tensor<3x128x64xf32> -> tensor<3x128xf32>
  // CHECK: kvcache.accumulated_scores %[[Q]], %[[K]] window(32) scale(1.250000e-01) :
  %w = kvcache.accumulated_scores %q, %k window(32) scale(0.125) : tensor<9x128x64xf32>, tensor<3x128x64xf32> -> tensor<3x128xf32>
  return %a, %w : tensor<3x128xf32>, tensor<3x128xf32>
}

// -----

// Every policy, printed with its defaults elided.
// CHECK-LABEL: func @compress
func.func @compress(%k: tensor<3x128x64xbf16>, %v: tensor<3x128x64xbf16>, %a: tensor<3x128xf32>) {
  // CHECK: kvcache.compress %{{.*}}, %{{.*}}, %{{.*}} {policy = #kvcache.policy<full>} : tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xf32> -> tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xi32>, tensor<3x128xi32>, tensor<3x128xf32>, tensor<3xi32>
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<full>}
      : tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xf32>
      -> tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xi32>, tensor<3x128xi32>, tensor<3x128xf32>, tensor<3xi32>
  // CHECK: {policy = #kvcache.policy<streaming, slots = 64>}
  %1:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, slots = 64, sink = 4>}
      : tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xf32>
      -> tensor<3x64x64xbf16>, tensor<3x64x64xbf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>, tensor<3xi32>
  // CHECK: {policy = #kvcache.policy<h2o, ratio = 3.500000e-01, sink = 2, recent = 8>}
  %2:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.35, sink = 2, recent = 8>}
      : tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xf32>
      -> tensor<3x45x64xbf16>, tensor<3x45x64xbf16>, tensor<3x45xi32>, tensor<3x45xi32>, tensor<3x45xf32>, tensor<3xi32>
  // CHECK: {policy = #kvcache.policy<kvmerger, ratio = 5.000000e-01, mode = threshold, eps = 8.000000e-01, sigma = 1.500000e+00>}
  %3:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, sigma = 1.5, eps = 0.8, mode = threshold, ratio = 0.5>}
      : tensor<3x128x64xbf16>, tensor<3x128x64xbf16>, tensor<3x128xf32>
      -> tensor<3x64x64xbf16>, tensor<3x64x64xbf16>, tensor<3x64xi32>, tensor<3x64xi32>, tensor<3x64xf32>, tensor<3xi32>
  // CHECK: {policy = #kvcache.policy<kvmerger, slots = 32, heavy = 3, sigma = auto>} : tensor<3x?x64xbf16>
  %kd = tensor.cast %k : tensor<3x128x64xbf16> to tensor<3x?x64xbf16>
  %vd = tensor.cast %v : tensor<3x128x64xbf16> to tensor<3x?x64xbf16>
  %ad = tensor.cast %a : tensor<3x128xf32> to tensor<3x?xf32>
  %4:6 = kvcache.compress %kd, %vd, %ad {policy = #kvcache.policy<kvmerger, slots = 32, heavy = 3, sigma = auto, mode = budget, eps = 0.75>}
      : tensor<3x?x64xbf16>, tensor<3x?x64xbf16>, tensor<3x?xf32>
      -> tensor<3x32x64xbf16>, tensor<3x32x64xbf16>, tensor<3x32xi32>, tensor<3x32xi32>, tensor<3x32xf32>, tensor<3xi32>
  return
}

// -----

// CHECK-LABEL: func @attention
// CHECK-SAME: (%[[Q:.*]]: tensor<9x1x64xf16>, %[[K:.*]]: tensor<3x64x64xf16>, %[[V:.*]]: tensor<3x64x32xf16>, %[[L:.*]]: tensor<3xi32>, %[[C:.*]]: tensor<3x64xi32>
func.func @attention(%q: tensor<9x1x64xf16>, %k: tensor<3x64x64xf16>, %v: tensor<3x64x32xf16>,
                     %len: tensor<3xi32>, %cnt: tensor<3x64xi32>, %qp: tensor<8x16x64xf32>,
                     %kp: tensor<8x16x64xf32>) -> (tensor<9x1x32xf16>, tensor<9x1x32xf16>, tensor<8x16x64xf32>) {
  %init = tensor.empty() : tensor<9x1x32xf16>
  // CHECK: kvcache.attention ins(%[[Q]], %[[K]], %[[V]] : tensor<9x1x64xf16>, tensor<3x64x64xf16>, tensor<3x64x32xf16>) lengths(%[[L]] : tensor<3xi32>) outs(%{{.*}} : tensor<9x1x32xf16>){{$}}
  %o = kvcache.attention ins(%q, %k, %v : tensor<9x1x64xf16>, tensor<3x64x64xf16>, tensor<3x64x32xf16>)
      lengths(%len : tensor<3xi32>) outs(%init : tensor<9x1x32xf16>)
  // CHECK: kvcache.attention {{.*}} lengths(%[[L]] : tensor<3xi32>) counts(%[[C]] : tensor<3x64xi32>) outs(%{{.*}} : tensor<9x1x32xf16>) scale(1.250000e-01) count_bias
  %b = kvcache.attention ins(%q, %k, %v : tensor<9x1x64xf16>, tensor<3x64x64xf16>, tensor<3x64x32xf16>)
      lengths(%len : tensor<3xi32>) counts(%cnt : tensor<3x64xi32>) outs(%init : tensor<9x1x32xf16>)
      scale(0.125) count_bias
  // Prefill: MHA, causal, no lengths.
  %pinit = tensor.empty() : tensor<8x16x64xf32>
  // CHECK: kvcache.attention ins({{.*}}) outs(%{{.*}} : tensor<8x16x64xf32>) causal{{$}}
  %p = kvcache.attention ins(%qp, %kp, %kp : tensor<8x16x64xf32>, tensor<8x16x64xf32>, tensor<8x16x64xf32>)
      outs(%pinit : tensor<8x16x64xf32>) causal
  return %o, %b, %p : tensor<9x1x32xf16>, tensor<9x1x32xf16>, tensor<8x16x64xf32>
}

// -----

// Attention that also returns the accumulated scores of its keys.
// CHECK-LABEL: func @attention_scores
// CHECK: %[[O:.*]], %[[A:.*]] = kvcache.attention ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<6x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) outs(%{{.*}}, %{{.*}} : tensor<6x8x16xf32>, tensor<2x8xf32>) causal
// CHECK: return %[[O]], %[[A]]
func.func @attention_scores(%q: tensor<6x8x16xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>) -> (tensor<6x8x16xf32>, tensor<2x8xf32>) {
  %o0 = tensor.empty() : tensor<6x8x16xf32>
  %a0 = tensor.empty() : tensor<2x8xf32>
  %o, %a = kvcache.attention ins(%q, %k, %v : tensor<6x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>)
      outs(%o0, %a0 : tensor<6x8x16xf32>, tensor<2x8xf32>) causal
  return %o, %a : tensor<6x8x16xf32>, tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func @masked_attention
// CHECK: kvcache.attention ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%{{.*}} : tensor<2x2x16xf32>) outs(%{{.*}} : tensor<4x2x8xf32>) scale(2.500000e-01) causal
// CHECK: kvcache.attention ins({{.*}}) lengths(%{{.*}} : tensor<2xi32>) mask(%{{.*}} : tensor<1x1x16xi1>) outs
func.func @masked_attention(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<2x2x16xf32>, %b: tensor<1x1x16xi1>, %l: tensor<2xi32>, %o: tensor<4x2x8xf32>) -> (tensor<4x2x8xf32>, tensor<4x2x8xf32>) {
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<2x2x16xf32>) outs(%o : tensor<4x2x8xf32>) scale(2.500000e-01) causal
  %1 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) lengths(%l : tensor<2xi32>) mask(%b : tensor<1x1x16xi1>) outs(%o : tensor<4x2x8xf32>)
  return %0, %1 : tensor<4x2x8xf32>, tensor<4x2x8xf32>
}

// -----

// CHECK-LABEL: func @append
// CHECK: %{{.*}}, %{{.*}} = kvcache.append %{{.*}}, %{{.*}} lengths(%{{.*}}) : tensor<3x64x64xf16>, tensor<3x2x64xf16>, tensor<3xi32> -> tensor<3x66x64xf16>, tensor<3xi32>
// CHECK: kvcache.append %{{.*}}, %{{.*}} lengths(%{{.*}}) : tensor<3x64xi32>, tensor<3x2xi32>, tensor<3xi32> -> tensor<3x66xi32>, tensor<3xi32>
func.func @append(%c: tensor<3x64x64xf16>, %a: tensor<3x2x64xf16>, %p: tensor<3x64xi32>, %pa: tensor<3x2xi32>, %l: tensor<3xi32>) -> (tensor<3x66x64xf16>, tensor<3x66xi32>) {
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<3x64x64xf16>, tensor<3x2x64xf16>, tensor<3xi32> -> tensor<3x66x64xf16>, tensor<3xi32>
  %s, %m = kvcache.append %p, %pa lengths(%l) : tensor<3x64xi32>, tensor<3x2xi32>, tensor<3xi32> -> tensor<3x66xi32>, tensor<3xi32>
  return %r, %s : tensor<3x66x64xf16>, tensor<3x66xi32>
}
