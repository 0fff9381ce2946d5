// RUN: kvmerge-opt %s --convert-kvcache-to-gpu --split-input-file | FileCheck %s

// similarity: 16 lanes per (head, link), two links per warp, 8 warps per
// block; each lane sums its elements (d = lane, lane + 16, ...) in f64, then
// the 16 lanes are combined by a xor butterfly (offsets 8, 4, 2, 1) for the
// dot product and both norms: 3 x 4 steps, each f64 shuffled as two i32
// halves. No fastmath flags (the order every path shares).
// CHECK-LABEL: func.func @similarity
// CHECK: %[[C256:.*]] = arith.constant 256 : index
// CHECK: gpu.launch blocks({{.*}}) in ({{.*}}) threads({{.*}}) in (%{{.*}} = %[[C256]]
// CHECK-SAME: function(@kvmerge_similarity)
// CHECK: scf.for {{.*}} step %c16{{.*}} -> (f64, f64, f64)
// CHECK:   arith.extf {{.*}} : f16 to f64
// CHECK:   arith.mulf {{.*}} : f64{{$}}
// CHECK:   arith.addf {{.*}} : f64{{$}}
// CHECK-COUNT-24: gpu.shuffle  xor
// CHECK-NOT: gpu.shuffle
// CHECK: math.sqrt {{.*}} : f64
// CHECK: arith.truncf {{.*}} : f64 to f32
// CHECK: gpu.terminator
func.func @similarity(%k: tensor<2x100x64xf16>) -> tensor<2x99xf32> {
  %s = kvcache.similarity %k : tensor<2x100x64xf16> -> tensor<2x99xf32>
  return %s : tensor<2x99xf32>
}

// -----

// merge_sets: one 512-thread block per head with 16 i32 of workgroup
// memory; block-wide counts (xor shuffles + barriers) and a shuffle-up scan.
// CHECK-LABEL: func.func @merge_sets
// CHECK: gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %c512{{.*}}) module(@kvmerge_merge_sets_{{[0-9]+}}) function(@kvmerge_merge_sets) workgroup(%{{.*}} : memref<16xi32, #gpu.address_space<workgroup>>)
// CHECK: scf.for
// CHECK: gpu.shuffle  xor
// CHECK: gpu.barrier
// CHECK: gpu.shuffle  up
// CHECK-NOT: kvcache.merge_sets
func.func @merge_sets(%s: tensor<2x99xf32>) -> (tensor<2x100xi32>, tensor<2xi32>) {
  %slot, %len = kvcache.merge_sets %s sink(4) recent(8) middle(38) mode(budget)
      : tensor<2x99xf32> -> tensor<2x100xi32>, tensor<2xi32>
  return %slot, %len : tensor<2x100xi32>, tensor<2xi32>
}

// -----

// select_sets (H2O): same block-per-head structure.
// CHECK-LABEL: func.func @select_sets
// CHECK: gpu.launch {{.*}} function(@kvmerge_select_sets)
// CHECK: gpu.shuffle  up
func.func @select_sets(%a: tensor<2x100xf32>) -> (tensor<2x100xi32>, tensor<2xi32>) {
  %slot, %len = kvcache.select_sets %a sink(4) recent(12) middle(34)
      : tensor<2x100xf32> -> tensor<2x100xi32>, tensor<2xi32>
  return %slot, %len : tensor<2x100xi32>, tensor<2xi32>
}

// -----

// merge: range init, one thread per token, then one 128-thread block per
// (slot, head) with f32 + i32 workgroup memory for the block argmax.
// CHECK-LABEL: func.func @merge
// CHECK: gpu.launch {{.*}} function(@kvmerge_merge_init)
// CHECK: gpu.launch {{.*}} function(@kvmerge_merge_ranges)
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c50{{.*}}, %{{.*}} = %{{.*}}, %{{.*}}) threads({{.*}}) in (%{{.*}} = %c128{{.*}}) module({{.*}}) function(@kvmerge_merge_slots) workgroup(%{{.*}} : memref<4xf32, #gpu.address_space<workgroup>>, %{{.*}} : memref<4xi32, #gpu.address_space<workgroup>>)
// CHECK: gpu.shuffle  xor
// CHECK: math.exp
// CHECK: arith.truncf {{.*}} : f32 to f16
func.func @merge(%k: tensor<2x100x64xf16>, %v: tensor<2x100x64xf16>, %a: tensor<2x100xf32>,
                 %slot: tensor<2x100xi32>, %len: tensor<2xi32>)
    -> (tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>) {
  %k0 = tensor.empty() : tensor<2x50x64xf16>
  %p0 = tensor.empty() : tensor<2x50xi32>
  %s0 = tensor.empty() : tensor<2x50xf32>
  %r:5 = kvcache.merge ins(%k, %v, %a : tensor<2x100x64xf16>, tensor<2x100x64xf16>, tensor<2x100xf32>)
      slots(%slot, %len : tensor<2x100xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>)
  return %r#0, %r#1, %r#2, %r#3, %r#4
      : tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>
}

// -----

// attention: split-K over key chunks (grid x), KV heads (y), queries (z);
// one warp per query head of the GQA group (4 x 32 threads); K and V tiles
// of 32 x 128 f16 staged in workgroup memory; then a one-warp combine per
// (query head, query).
// CHECK-LABEL: func.func @decode
// CHECK: %[[GROUP:.*]] = arith.divui
// CHECK: %[[THREADS:.*]] = arith.muli %[[GROUP]], %c32
// CHECK: gpu.launch {{.*}} threads({{.*}}) in (%{{.*}} = %[[THREADS]], {{.*}}) module({{.*}}) function(@kvmerge_attention_split) workgroup(%{{.*}} : memref<4096xf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<4096xf16, #gpu.address_space<workgroup>>)
// CHECK: gpu.barrier
// CHECK: gpu.shuffle  xor
// CHECK: math.exp
// CHECK: gpu.launch {{.*}} in (%{{.*}} = %c32{{.*}}) {{.*}} function(@kvmerge_attention_combine)
func.func @decode(%q: tensor<32x1x128xf16>, %k: tensor<8x4096x128xf16>, %v: tensor<8x4096x128xf16>,
                  %len: tensor<8xi32>) -> tensor<32x1x128xf16> {
  %init = tensor.empty() : tensor<32x1x128xf16>
  %o = kvcache.attention ins(%q, %k, %v : tensor<32x1x128xf16>, tensor<8x4096x128xf16>, tensor<8x4096x128xf16>)
      lengths(%len : tensor<8xi32>) outs(%init : tensor<32x1x128xf16>)
  return %o : tensor<32x1x128xf16>
}

// -----

// Without a GPU mapping, ops stay for convert-kvcache-to-loops (host):
// f64 storage, accumulated_scores, attention with a scores result.
// CHECK-LABEL: func.func @host_fallback
// CHECK-NOT: gpu.launch
// CHECK: kvcache.similarity
// CHECK: kvcache.accumulated_scores
// CHECK: kvcache.attention
// CHECK-NOT: gpu.launch
func.func @host_fallback(%k64: tensor<2x10x8xf64>, %q: tensor<4x10x8xf32>, %k: tensor<2x10x8xf32>)
    -> (tensor<2x9xf32>, tensor<2x10xf32>, tensor<4x10x8xf32>, tensor<2x10xf32>) {
  %s = kvcache.similarity %k64 : tensor<2x10x8xf64> -> tensor<2x9xf32>
  %a = kvcache.accumulated_scores %q, %k : tensor<4x10x8xf32>, tensor<2x10x8xf32> -> tensor<2x10xf32>
  %init = tensor.empty() : tensor<4x10x8xf32>
  %a0 = tensor.empty() : tensor<2x10xf32>
  %o, %sc = kvcache.attention ins(%q, %k, %k : tensor<4x10x8xf32>, tensor<2x10x8xf32>, tensor<2x10x8xf32>)
      outs(%init, %a0 : tensor<4x10x8xf32>, tensor<2x10xf32>) causal
  return %s, %a, %o, %sc : tensor<2x9xf32>, tensor<2x10xf32>, tensor<4x10x8xf32>, tensor<2x10xf32>
}
