// RUN: kvmerge-opt %s -split-input-file --kvmerge-insert-compression="budget=0.5" --allow-unregistered-dialect -verify-diagnostics | FileCheck %s

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

// Keys and values computed inside the function and neither returned nor read
// from arguments are no cache: nothing to compress, and a remark says so.
// CHECK-LABEL: func @no_cache
// CHECK-NOT: kvcache.compress
func.func @no_cache(%q: tensor<4x8x16xf32>, %x: tensor<2x8x16xf32>) -> tensor<4x8x16xf32> {
  %i = tensor.empty() : tensor<4x8x16xf32>
  %k = arith.negf %x : tensor<2x8x16xf32>
  // expected-remark @+1 {{not compressed: its keys and values are neither returned by the function (a prefill) nor read from its arguments (a decode step), so there is no cache to compress}}
  %o = kvcache.attention ins(%q, %k, %x : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) outs(%i : tensor<4x8x16xf32>) causal
  return %o : tensor<4x8x16xf32>
}

// -----

// An attention outside a func.func (here an unregistered function op, as in
// IREE's input form printed generically) cannot have its signature rewritten:
// a warning, and the IR is unchanged.
// CHECK-LABEL: "util.func"
// CHECK-NOT: kvcache.compress
"util.func"() ({
^bb0(%q: tensor<4x8x16xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>):
  %i = tensor.empty() : tensor<4x8x16xf32>
  // expected-warning @+1 {{not compressed: this attention is inside 'util.func', not a func.func, and kvmerge-insert-compression rewrites func.func signatures}}
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) outs(%i : tensor<4x8x16xf32>) causal
  "util.return"(%o, %k, %v) : (tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> ()
}) {sym_name = "f"} : () -> ()

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

// -----

// Frontend layout: the prefill returns [1, Hkv, L, D] caches that the
// attention reads through a collapse; the compressed caches come back in
// that layout ([1, Hkv, B, D]).
// CHECK-LABEL: func @prefill_4d
// CHECK-SAME: -> (tensor<4x32x16xf32>, tensor<1x2x16x16xf32> {kvcache.role = "keys"}, tensor<1x2x16x16xf32> {kvcache.role = "values"}, tensor<2x16xi32> {kvcache.role = "positions"}
// CHECK: %[[K3:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2], [3]] : tensor<1x2x32x16xf32> into tensor<2x32x16xf32>
// CHECK: %[[CK:[^,]*]], %[[CV:[^,]*]], %{{.*}} = kvcache.compress %[[K3]]
// CHECK: %[[RK:.*]] = tensor.expand_shape %[[CK]] {{\[\[}}0, 1], [2], [3]] output_shape [1, 2, 16, 16] : tensor<2x16x16xf32> into tensor<1x2x16x16xf32>
// CHECK: %[[RV:.*]] = tensor.expand_shape %[[CV]]
// CHECK: return %{{.*}}, %[[RK]], %[[RV]],
func.func @prefill_4d(%q: tensor<4x32x16xf32>, %k: tensor<1x2x32x16xf32>, %v: tensor<1x2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<1x2x32x16xf32>, tensor<1x2x32x16xf32>) {
  %k3 = tensor.collapse_shape %k [[0, 1], [2], [3]] : tensor<1x2x32x16xf32> into tensor<2x32x16xf32>
  %v3 = tensor.collapse_shape %v [[0, 1], [2], [3]] : tensor<1x2x32x16xf32> into tensor<2x32x16xf32>
  %i = tensor.empty() : tensor<4x32x16xf32>
  // expected-remark @+1 {{results #1 and #2 are this attention's keys and values}}
  %o = kvcache.attention ins(%q, %k3, %v3 : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v : tensor<4x32x16xf32>, tensor<1x2x32x16xf32>, tensor<1x2x32x16xf32>
}

// -----

// Keys returned as [1, L, Hkv, D] (before the frontend's transpose): the
// compressed keys go back through the inverse transpose.
// CHECK-LABEL: func @prefill_transposed
// CHECK: %[[CK:[^,]*]], %{{.*}} = kvcache.compress
// CHECK: %[[E:.*]] = tensor.expand_shape %[[CK]]
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[E]] : tensor<1x2x16x16xf32>) {{.*}} permutation = [0, 2, 1, 3]
// CHECK: return %{{.*}}, %[[T]], %{{.*}} : tensor<4x32x16xf32>, tensor<1x16x2x16xf32>
func.func @prefill_transposed(%q: tensor<4x32x16xf32>, %kt: tensor<1x32x2x16xf32>, %v: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<1x32x2x16xf32>, tensor<2x32x16xf32>) {
  %e = tensor.empty() : tensor<1x2x32x16xf32>
  %k4 = linalg.transpose ins(%kt : tensor<1x32x2x16xf32>) outs(%e : tensor<1x2x32x16xf32>) permutation = [0, 2, 1, 3]
  %k3 = tensor.collapse_shape %k4 [[0, 1], [2], [3]] : tensor<1x2x32x16xf32> into tensor<2x32x16xf32>
  %i = tensor.empty() : tensor<4x32x16xf32>
  // expected-remark @+1 {{results #1 and #2 are this attention's keys and values}}
  %o = kvcache.attention ins(%q, %k3, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %kt, %v : tensor<4x32x16xf32>, tensor<1x32x2x16xf32>, tensor<2x32x16xf32>
}

// -----

// A decode step that attends to concat(cache, new) (Hugging Face's
// DynamicCache): the new tokens are appended after the valid slots, the
// attention reads lengths + T slots, and the grown cache and its lengths
// are returned.
// CHECK-LABEL: func @decode_concat
// CHECK-SAME: (%{{.*}}: tensor<4x1x16xf32>, %[[K:.*]]: tensor<1x2x8x16xf32> {kvcache.role = "keys"}, %[[V:.*]]: tensor<1x2x8x16xf32> {kvcache.role = "values"}, %[[NK:.*]]: tensor<1x2x1x16xf32>, %[[NV:.*]]: tensor<1x2x1x16xf32>, %[[LEN:.*]]: tensor<2xi32> {kvcache.role = "lengths"})
// CHECK-SAME: -> (tensor<4x1x16xf32>, tensor<1x2x9x16xf32> {kvcache.role = "keys"}, tensor<1x2x9x16xf32> {kvcache.role = "values"}, tensor<2xi32> {kvcache.role = "lengths"})
// CHECK-DAG: %[[K3:.*]] = tensor.collapse_shape %[[K]]
// CHECK-DAG: %[[NK3:.*]] = tensor.collapse_shape %[[NK]]
// CHECK: %[[AK:[^,]*]], %[[L2:[^ ]*]] = kvcache.append %[[K3]], %[[NK3]] lengths(%[[LEN]])
// CHECK: %[[AV:[^,]*]], %{{.*}} = kvcache.append %{{.*}}, %{{.*}} lengths(%[[LEN]])
// CHECK: %[[O:.*]] = kvcache.attention ins(%{{.*}}, %[[AK]], %[[AV]] : {{.*}}) lengths(%[[L2]] : tensor<2xi32>)
// CHECK: %[[RK:.*]] = tensor.expand_shape %[[AK]]
// CHECK: %[[RV:.*]] = tensor.expand_shape %[[AV]]
// CHECK: return %[[O]], %[[RK]], %[[RV]], %[[L2]]
func.func @decode_concat(%q: tensor<4x1x16xf32>, %k: tensor<1x2x8x16xf32>, %v: tensor<1x2x8x16xf32>, %nk: tensor<1x2x1x16xf32>, %nv: tensor<1x2x1x16xf32>)
    -> (tensor<4x1x16xf32>, tensor<1x2x9x16xf32>, tensor<1x2x9x16xf32>) {
  %ck = tensor.concat dim(2) %k, %nk : (tensor<1x2x8x16xf32>, tensor<1x2x1x16xf32>) -> tensor<1x2x9x16xf32>
  %cv = tensor.concat dim(2) %v, %nv : (tensor<1x2x8x16xf32>, tensor<1x2x1x16xf32>) -> tensor<1x2x9x16xf32>
  %k3 = tensor.collapse_shape %ck [[0, 1], [2], [3]] : tensor<1x2x9x16xf32> into tensor<2x9x16xf32>
  %v3 = tensor.collapse_shape %cv [[0, 1], [2], [3]] : tensor<1x2x9x16xf32> into tensor<2x9x16xf32>
  %i = tensor.empty() : tensor<4x1x16xf32>
  // expected-remark @+1 {{attends to arguments #1 and #2 with new tokens concatenated: compressing as a decode step over a compressed cache (mark them with kvcache.role to make it explicit)}}
  %o = kvcache.attention ins(%q, %k3, %v3 : tensor<4x1x16xf32>, tensor<2x9x16xf32>, tensor<2x9x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o, %ck, %cv : tensor<4x1x16xf32>, tensor<1x2x9x16xf32>, tensor<1x2x9x16xf32>
}

// -----

// Two layers in one decode function: each attention gets its own lengths
// argument (the i-th marked "lengths" argument serves the i-th attention).
// CHECK-LABEL: func @two_layers
// CHECK-SAME: %[[L0:[^:]*]]: tensor<2xi32> {kvcache.role = "lengths"}, %[[L1:[^:]*]]: tensor<2xi32> {kvcache.role = "lengths"})
// CHECK: kvcache.attention {{.*}} lengths(%[[L0]] : tensor<2xi32>)
// CHECK: kvcache.attention {{.*}} lengths(%[[L1]] : tensor<2xi32>)
func.func @two_layers(%q: tensor<4x1x16xf32>, %k0: tensor<2x16x16xf32> {kvcache.role = "keys"}, %v0: tensor<2x16x16xf32> {kvcache.role = "values"}, %k1: tensor<2x16x16xf32> {kvcache.role = "keys"}, %v1: tensor<2x16x16xf32> {kvcache.role = "values"}) -> (tensor<4x1x16xf32>, tensor<4x1x16xf32>) {
  %i = tensor.empty() : tensor<4x1x16xf32>
  %o0 = kvcache.attention ins(%q, %k0, %v0 : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  %o1 = kvcache.attention ins(%o0, %k1, %v1 : tensor<4x1x16xf32>, tensor<2x16x16xf32>, tensor<2x16x16xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o0, %o1 : tensor<4x1x16xf32>, tensor<4x1x16xf32>
}

// -----

// A decode under a frontend's mask cannot read a compressed cache: the mask
// refers to slot positions compression does not keep.
func.func @decode_masked(%q: tensor<4x1x16xf32>, %k: tensor<1x2x8x16xf32>, %v: tensor<1x2x8x16xf32>, %nk: tensor<1x2x1x16xf32>, %nv: tensor<1x2x1x16xf32>, %m: tensor<1x1x9xf32>)
    -> (tensor<4x1x16xf32>, tensor<1x2x9x16xf32>, tensor<1x2x9x16xf32>) {
  %ck = tensor.concat dim(2) %k, %nk : (tensor<1x2x8x16xf32>, tensor<1x2x1x16xf32>) -> tensor<1x2x9x16xf32>
  %cv = tensor.concat dim(2) %v, %nv : (tensor<1x2x8x16xf32>, tensor<1x2x1x16xf32>) -> tensor<1x2x9x16xf32>
  %k3 = tensor.collapse_shape %ck [[0, 1], [2], [3]] : tensor<1x2x9x16xf32> into tensor<2x9x16xf32>
  %v3 = tensor.collapse_shape %cv [[0, 1], [2], [3]] : tensor<1x2x9x16xf32> into tensor<2x9x16xf32>
  %i = tensor.empty() : tensor<4x1x16xf32>
  // expected-error @+1 {{this decode attention has a mask over the frontend's slot order, which does not exist in a compressed cache (slots are merged or evicted): export the decode without an attention mask, or leave its caches uncompressed}}
  %o = kvcache.attention ins(%q, %k3, %v3 : tensor<4x1x16xf32>, tensor<2x9x16xf32>, tensor<2x9x16xf32>) mask(%m : tensor<1x1x9xf32>) outs(%i : tensor<4x1x16xf32>)
  return %o, %ck, %cv : tensor<4x1x16xf32>, tensor<1x2x9x16xf32>, tensor<1x2x9x16xf32>
}
