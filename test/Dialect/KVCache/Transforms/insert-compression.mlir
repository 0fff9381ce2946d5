// RUN: kvmerge-opt %s -split-input-file --kvmerge-insert-compression="budget=0.5" -verify-diagnostics | FileCheck %s

// Prefill with marked caches: the attention also returns the scores of its
// own probabilities, the caches come back compressed, and the slot metadata
// is appended as marked results.
// CHECK-LABEL: func @prefill
// CHECK-SAME: (%[[Q:.*]]: tensor<4x32x16xf32>, %[[K:.*]]: tensor<2x32x16xf32>, %[[V:.*]]: tensor<2x32x16xf32>)
// CHECK-SAME: -> (tensor<4x32x16xf32>, tensor<2x16x16xf32> {kvcache.role = "keys"}, tensor<2x16x16xf32> {kvcache.role = "values"}, tensor<2x16xi32> {kvcache.role = "positions"}, tensor<2x16xi32> {kvcache.role = "counts"}, tensor<2x16xf32> {kvcache.role = "scores"}, tensor<2xi32> {kvcache.role = "lengths"})
// CHECK: %[[S0:.*]] = tensor.empty() : tensor<2x32xf32>
// CHECK: %[[O:.*]], %[[A:.*]] = kvcache.attention ins(%[[Q]], %[[K]], %[[V]] : {{.*}}) outs(%{{.*}}, %[[S0]] : tensor<4x32x16xf32>, tensor<2x32xf32>) causal
// CHECK: %[[CK:.*]], %[[CV:.*]], %[[P:.*]], %[[C:.*]], %[[CS:.*]], %[[L:.*]] = kvcache.compress %[[K]], %[[V]], %[[A]] {policy = #kvcache.policy<kvmerger, ratio = 5.000000e-01>}
// CHECK: return %[[O]], %[[CK]], %[[CV]], %[[P]], %[[C]], %[[CS]], %[[L]]
func.func @prefill(%q: tensor<4x32x16xf32>, %k: tensor<2x32x16xf32>, %v: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<2x32x16xf32> {kvcache.role = "keys"}, tensor<2x32x16xf32> {kvcache.role = "values"}) {
  %i = tensor.empty() : tensor<4x32x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>
}

// -----

// Unmarked results that are an attention's keys and values are found, with
// a remark; they get marked.
// CHECK-LABEL: func @prefill_auto
// CHECK-SAME: -> (tensor<4x32x16xf32>, tensor<2x16x16xf32> {kvcache.role = "keys"}, tensor<2x16x16xf32> {kvcache.role = "values"}
// CHECK: kvcache.compress
func.func @prefill_auto(%q: tensor<4x32x16xf32>, %k: tensor<2x32x16xf32>, %v: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) {
  %i = tensor.empty() : tensor<4x32x16xf32>
  // expected-remark @+1 {{results #1 and #2 are this attention's keys and values: compressing them as a prefill cache (mark them with kvcache.role to make it explicit)}}
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>
}

// -----

// Decode over marked caches: a lengths argument is appended and the
// attention reads only the valid slots.
// CHECK-LABEL: func @decode
// CHECK-SAME: (%{{.*}}: tensor<4x1x16xf32>, %{{.*}}: tensor<2x16x16xf32> {kvcache.role = "keys"}, %{{.*}}: tensor<2x16x16xf32> {kvcache.role = "values"}, %[[LEN:.*]]: tensor<2xi32> {kvcache.role = "lengths"})
// CHECK: kvcache.attention {{.*}} lengths(%[[LEN]] : tensor<2xi32>)
func.func @decode(%q: tensor<4x1x16xf32>, %k: tensor<2x16x16xf32> {kvcache.role = "keys"}, %v: tensor<2x16x16xf32> {kvcache.role = "values"}) -> tensor<4x1x16xf32> {
  %i = tensor.empty() : tensor<4x1x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o : tensor<4x1x16xf32>
}

// -----

// A marked lengths argument is used as is.
// CHECK-LABEL: func @decode_marked_lengths
// CHECK-SAME: %[[LEN:[^:]*]]: tensor<2xi32> {kvcache.role = "lengths"}, %{{.*}}: tensor<4x1x16xf32>
// CHECK: kvcache.attention {{.*}} lengths(%[[LEN]] : tensor<2xi32>)
func.func @decode_marked_lengths(%len: tensor<2xi32> {kvcache.role = "lengths"}, %q: tensor<4x1x16xf32>, %k: tensor<2x16x16xf32> {kvcache.role = "keys"}, %v: tensor<2x16x16xf32> {kvcache.role = "values"}) -> tensor<4x1x16xf32> {
  %i = tensor.empty() : tensor<4x1x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o : tensor<4x1x16xf32>
}

// -----

// Unmarked decode caches are left alone, with a remark.
// CHECK-LABEL: func @decode_unmarked
// CHECK-NOT: lengths(
func.func @decode_unmarked(%q: tensor<4x1x16xf32>, %k: tensor<2x16x16xf32>, %v: tensor<2x16x16xf32>) -> tensor<4x1x16xf32> {
  %i = tensor.empty() : tensor<4x1x16xf32>
  // expected-remark @+1 {{reads its keys/values from arguments #1 and #2 that are not marked kvcache.role = "keys"/"values": attending to every slot}}
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o : tensor<4x1x16xf32>
}

// -----

// A marked result must be an attention's cache.
// expected-error @+1 {{result #1 is marked kvcache.role = "keys" but is not the keys of an attention in the function}}
func.func @wrong_mark(%q: tensor<4x1x16xf32>, %k: tensor<2x16x16xf32>, %v: tensor<2x16x16xf32>) -> (tensor<4x1x16xf32>, tensor<2x16x16xf32> {kvcache.role = "keys"}) {
  %i = tensor.empty() : tensor<4x1x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o, %v : tensor<4x1x16xf32>, tensor<2x16x16xf32>
}

// -----

// A budget that leaves no middle slot is reported on the compress.
func.func @tiny(%q: tensor<4x8x16xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>)
    -> (tensor<4x8x16xf32>, tensor<2x8x16xf32> {kvcache.role = "keys"}, tensor<2x8x16xf32> {kvcache.role = "values"}) {
  %i = tensor.empty() : tensor<4x8x16xf32>
  // expected-error @+1 {{'kvcache.compress' op budget of 4 slots leaves no slot for the middle after sink (4) and recent (1)}}
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) outs(%i : tensor<4x8x16xf32>) causal
  return %o, %k, %v : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>
}
