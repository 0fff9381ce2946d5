// Raising attention written in upstream dialects to kvcache.attention:
// positive cases (one per spelling) and negative ones (each is almost
// attention), with the pass's remarks checked.
// RUN: kvmerge-opt %s -split-input-file --kvmerge-raise-attention="remarks=true" -verify-diagnostics --canonicalize --cse | FileCheck %s

// torch-mlir linalg-on-tensors: transpose + batch_matmul, scale by mul, max/sub+exp/sum/div softmax.
// CHECK-LABEL: func @torch_mlir_style
// CHECK-SAME: (%[[Q:.*]]: tensor<4x8x16xf32>, %[[K:.*]]: tensor<4x8x16xf32>, %[[V:.*]]: tensor<4x8x16xf32>)
// CHECK: %[[O:.*]] = kvcache.attention ins(%[[Q]], %[[K]], %[[V]] : tensor<4x8x16xf32>, tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%{{.*}} : tensor<4x8x16xf32>) scale(2.500000e-01){{$}}
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[O]]
func.func @torch_mlir_style(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// K^T in the contraction's indexing map, scale by divide, linalg.softmax.
// CHECK-LABEL: func @named_softmax_transposed_map
// CHECK: kvcache.attention ins(%{{.*}}, %{{.*}}, %{{.*}} : {{.*}}) outs({{.*}}) scale(2.500000e-01)
// CHECK-NOT: linalg.softmax
func.func @named_softmax_transposed_map(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %den = arith.constant 4.0 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.divf %in, %den : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Both contractions as linalg.generic (Q.K^T contracting the head dim of [b, n, k] K).
// CHECK-LABEL: func @generic_contractions
// CHECK: kvcache.attention
// CHECK-NOT: linalg.generic
func.func @generic_contractions(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Softmax with sub and exp in separate generics.
// CHECK-LABEL: func @split_sub_exp
// CHECK: kvcache.attention {{.*}} scale(2.500000e-01){{$}}
func.func @split_sub_exp(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %d = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    linalg.yield %x : f32
  } -> tensor<4x8x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%d : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %x = math.exp %in : f32
    linalg.yield %x : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// An additive constant causal mask (-inf above the diagonal) becomes `causal`.
// CHECK-LABEL: func @causal_constant_mask
// CHECK: kvcache.attention {{.*}} scale(2.500000e-01) causal{{$}}
func.func @causal_constant_mask(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %mask = arith.constant dense<[[0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]> : tensor<8x8xf32>
  %sm = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mask : tensor<4x8x8xf32>, tensor<8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %mk: f32, %o: f32):
    %r = arith.addf %in, %mk : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%sm : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%sm, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25, causal)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// A masked fill on linalg.index (key > query -> -inf) becomes `causal`.
// CHECK-LABEL: func @causal_masked_fill
// CHECK: kvcache.attention {{.*}} causal{{$}}
// CHECK-NOT: linalg.index
func.func @causal_masked_fill(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %sm = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %i = linalg.index 1 : index
    %j = linalg.index 2 : index
    %c = arith.cmpi ugt, %j, %i : index
    %r = arith.select %c, %ninf, %in : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%sm : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25, causal)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// GQA: K and V [2, N, D] broadcast to [2, 2, N, D] and collapsed to 4 query heads.
// CHECK-LABEL: func @gqa_broadcast
// CHECK-SAME: (%[[Q:.*]]: tensor<4x8x16xf32>, %[[K:.*]]: tensor<2x8x16xf32>, %[[V:.*]]: tensor<2x8x16xf32>)
// CHECK: kvcache.attention ins(%[[Q]], %[[K]], %[[V]] : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>)
// CHECK-NOT: linalg.broadcast
func.func @gqa_broadcast(%q: tensor<4x8x16xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kb0 = tensor.empty() : tensor<2x2x8x16xf32>
  %kb = linalg.broadcast ins(%k : tensor<2x8x16xf32>) outs(%kb0 : tensor<2x2x8x16xf32>) dimensions = [1]
  %kr = tensor.collapse_shape %kb [[0, 1], [2], [3]] : tensor<2x2x8x16xf32> into tensor<4x8x16xf32>
  %vb0 = tensor.empty() : tensor<2x2x8x16xf32>
  %vb = linalg.broadcast ins(%v : tensor<2x8x16xf32>) outs(%vb0 : tensor<2x2x8x16xf32>) dimensions = [1]
  %vr = tensor.collapse_shape %vb [[0, 1], [2], [3]] : tensor<2x2x8x16xf32> into tensor<4x8x16xf32>
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %kr : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 2, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %vr : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// GQA through a broadcasting linalg.generic (torch's expand + reshape).
// CHECK-LABEL: func @gqa_generic_broadcast
// CHECK: kvcache.attention ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<4x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>)
func.func @gqa_generic_broadcast(%q: tensor<4x8x16xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kb0 = tensor.empty() : tensor<2x2x8x16xf32>
  %kb = linalg.generic {indexing_maps = [affine_map<(a, g, n, d) -> (a, n, d)>, affine_map<(a, g, n, d) -> (a, g, n, d)>], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%k : tensor<2x8x16xf32>) outs(%kb0 : tensor<2x2x8x16xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<2x2x8x16xf32>
  %kr = tensor.collapse_shape %kb [[0, 1], [2], [3]] : tensor<2x2x8x16xf32> into tensor<4x8x16xf32>
  %vb0 = tensor.empty() : tensor<2x2x8x16xf32>
  %vb = linalg.generic {indexing_maps = [affine_map<(a, g, n, d) -> (a, n, d)>, affine_map<(a, g, n, d) -> (a, g, n, d)>], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%v : tensor<2x8x16xf32>) outs(%vb0 : tensor<2x2x8x16xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<2x2x8x16xf32>
  %vr = tensor.collapse_shape %vb [[0, 1], [2], [3]] : tensor<2x2x8x16xf32> into tensor<4x8x16xf32>
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%kr : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 2, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %vr : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// f16 storage: extf before the f32 math, truncf after; the raised op reads the f16 tensors.
// CHECK-LABEL: func @f16_extf_truncf
// CHECK-SAME: (%[[Q:.*]]: tensor<4x8x16xf16>, %[[K:.*]]: tensor<4x8x16xf16>, %[[V:.*]]: tensor<4x8x16xf16>)
// CHECK: %[[O:.*]] = kvcache.attention ins(%[[Q]], %[[K]], %[[V]] : tensor<4x8x16xf16>, tensor<4x8x16xf16>, tensor<4x8x16xf16>) outs(%{{.*}} : tensor<4x8x16xf32>)
// CHECK: arith.truncf %[[O]]
func.func @f16_extf_truncf(%q16: tensor<4x8x16xf16>, %k16: tensor<4x8x16xf16>, %v16: tensor<4x8x16xf16>) -> tensor<4x8x16xf16> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %q = arith.extf %q16 : tensor<4x8x16xf16> to tensor<4x8x16xf32>
  %k = arith.extf %k16 : tensor<4x8x16xf16> to tensor<4x8x16xf32>
  %v = arith.extf %v16 : tensor<4x8x16xf16> to tensor<4x8x16xf32>
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  %o16 = arith.truncf %o : tensor<4x8x16xf32> to tensor<4x8x16xf16>
  return %o16 : tensor<4x8x16xf16>
}

// -----

// bf16 storage widened by extf generics (as torch-mlir emits) is looked through.
// CHECK-LABEL: func @bf16_generic_extf
// CHECK: kvcache.attention ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<4x8x16xbf16>, tensor<4x8x16xbf16>, tensor<4x8x16xbf16>) outs(%{{.*}} : tensor<4x8x16xf32>)
func.func @bf16_generic_extf(%qb: tensor<4x8x16xbf16>, %kb: tensor<4x8x16xbf16>, %vb: tensor<4x8x16xbf16>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %q0 = tensor.empty() : tensor<4x8x16xf32>
  %q = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%qb : tensor<4x8x16xbf16>) outs(%q0 : tensor<4x8x16xf32>) {
  ^bb0(%in: bf16, %o: f32):
    %e = arith.extf %in : bf16 to f32
    linalg.yield %e : f32
  } -> tensor<4x8x16xf32>
  %k0 = tensor.empty() : tensor<4x8x16xf32>
  %k = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%kb : tensor<4x8x16xbf16>) outs(%k0 : tensor<4x8x16xf32>) {
  ^bb0(%in: bf16, %o: f32):
    %e = arith.extf %in : bf16 to f32
    linalg.yield %e : f32
  } -> tensor<4x8x16xf32>
  %v0 = tensor.empty() : tensor<4x8x16xf32>
  %v = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%vb : tensor<4x8x16xbf16>) outs(%v0 : tensor<4x8x16xf32>) {
  ^bb0(%in: bf16, %o: f32):
    %e = arith.extf %in : bf16 to f32
    linalg.yield %e : f32
  } -> tensor<4x8x16xf32>
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %den = arith.constant 4.0 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.divf %in, %den : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Scale as linalg.mul by a splat constant tensor.
// CHECK-LABEL: func @named_mul_splat
// CHECK: kvcache.attention {{.*}} scale(2.500000e-01)
func.func @named_mul_splat(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %sc = arith.constant dense<0.25> : tensor<4x8x8xf32>
  %ss = linalg.mul ins(%s, %sc : tensor<4x8x8xf32>, tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Scale as linalg.div by a filled tensor (sqrt(D) = 4).
// CHECK-LABEL: func @named_div_fill
// CHECK: kvcache.attention {{.*}} scale(2.500000e-01)
func.func @named_div_fill(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %four = arith.constant 4.0 : f32
  %sd = linalg.fill ins(%four : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %ss = linalg.div ins(%s, %sd : tensor<4x8x8xf32>, tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Softmax over the query axis, not the key axis. Left alone.
// CHECK-LABEL: func @softmax_wrong_axis
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @softmax_wrong_axis(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(1) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: softmax divides by a sum of other values or over another axis than the one P . V contracts}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// The max of the decomposed softmax reduces the query axis. Left alone.
// CHECK-LABEL: func @max_over_wrong_axis
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @max_over_wrong_axis(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d2)>], iterator_types = ["parallel", "reduction", "parallel"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: logits subtract a reduction of the scores that varies along the key axis (a softmax subtracts the row maximum)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// No scale between Q.K^T and the softmax: attention with scale 1.
// CHECK-LABEL: func @missing_scale
// CHECK: kvcache.attention {{.*}} scale(1.000000e+00){{$}}
// CHECK-NOT: linalg.batch_matmul
func.func @missing_scale(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 1)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// An additive mask that is not causal (arbitrary biases) becomes the
// attention's mask operand, materialized by one generic over [1, M, N]
// (here folded to a constant by --canonicalize).
// CHECK-LABEL: func @non_causal_mask
// CHECK: %[[MASK:.*]] = arith.constant dense<{{.*}}> : tensor<1x8x8xf32>
// CHECK: kvcache.attention {{.*}} mask(%[[MASK]] : tensor<1x8x8xf32>) outs({{.*}}) scale(2.500000e-01){{$}}
// CHECK-NOT: linalg.batch_matmul
func.func @non_causal_mask(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %mask = arith.constant dense<[[-1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0], [0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0], [0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0]]> : tensor<8x8xf32>
  %sm = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mask : tensor<4x8x8xf32>, tensor<8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %mk: f32, %o: f32):
    %r = arith.addf %in, %mk : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%sm : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%sm, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.addf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25, mask 1x8x8xf32)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// A masked fill hiding the past (query > key), not the future: not causal,
// a boolean mask (-inf fill) of the visible slots.
// CHECK-LABEL: func @anti_causal_fill
// CHECK: linalg.generic
// CHECK: arith.cmpi
// CHECK: %[[MASK:.*]] = tensor.expand_shape
// CHECK: kvcache.attention {{.*}} mask(%[[MASK]] : tensor<1x8x8xi1>) outs({{.*}}) scale(2.500000e-01){{$}}
func.func @anti_causal_fill(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %sm = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %i = linalg.index 1 : index
    %j = linalg.index 2 : index
    %c = arith.cmpi ult, %j, %i : index
    %r = arith.select %c, %ninf, %in : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%sm : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25, mask 1x8x8xi1)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Probabilities divided by a max-reduction instead of a sum. Left alone.
// CHECK-LABEL: func @normalized_by_max
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @normalized_by_max(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kt0 = tensor.empty() : tensor<4x16x8xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8x16xf32>) outs(%kt0 : tensor<4x16x8xf32>) permutation = [0, 2, 1]
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul ins(%q, %kt : tensor<4x8x16xf32>, tensor<4x16x8xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %m0 = tensor.empty() : tensor<4x8xf32>
  %mf = linalg.fill ins(%ninf : f32) outs(%m0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %mx = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%ss : tensor<4x8x8xf32>) outs(%mf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %e = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss, %mx : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %x = arith.subf %in, %in1 : f32
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8x8xf32>
  %z0 = tensor.empty() : tensor<4x8xf32>
  %zf = linalg.fill ins(%c0 : f32) outs(%z0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<4x8x8xf32>) outs(%zf : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.maximumf %in, %o : f32
    linalg.yield %r : f32
  } -> tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %sum : tensor<4x8x8xf32>, tensor<4x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %in1: f32, %o: f32):
    %r = arith.divf %in, %in1 : f32
    linalg.yield %r : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: softmax is not normalized by a sum over one axis}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Scale by a runtime tensor, not a constant. Left alone.
// CHECK-LABEL: func @scale_by_argument
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @scale_by_argument(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>, %t: tensor<4x8x8xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %ss = linalg.mul ins(%s, %t : tensor<4x8x8xf32>, tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: logits scale Q . K^T by a value that is not a constant}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// A negative scale is not attention's 1/sqrt(d). Left alone.
// CHECK-LABEL: func @negative_scale
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @negative_scale(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant -0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: the logit scale is not a finite positive number (got -2.500000e-01)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Q.K^T accumulates into ones (S = 1 + Q.K^T). Left alone.
// CHECK-LABEL: func @qk_accumulates
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @qk_accumulates(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %one = arith.constant 1.0 : f32
  %sz = linalg.fill ins(%one : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: Q . K^T accumulates into a non-zero initial value}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// exp(S) without normalization is not a softmax and not a candidate either
// (no reduction normalizes it, like the SiLU of a gated MLP): no remark.
// CHECK-LABEL: func @unnormalized_exp
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @unnormalized_exp(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %k : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %x = math.exp %in : f32
    linalg.yield %x : f32
  } -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// Q.K^T reads Q as [heads, dim, queries]: Q is transposed for the op.
// CHECK-LABEL: func @queries_transposed
// CHECK-SAME: (%[[QT:[^:]*]]: tensor<4x16x8xf32>
// CHECK: %[[Q:.*]] = linalg.transpose ins(%[[QT]] : tensor<4x16x8xf32>) {{.*}} permutation = [0, 2, 1]
// CHECK: kvcache.attention ins(%[[Q]], 
func.func @queries_transposed(%qt: tensor<4x16x8xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, k, m)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%qt, %k : tensor<4x16x8xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{raised attention (G = 1, scale = 0.25)}}
  %o = linalg.batch_matmul ins(%p, %v : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}

// -----

// K shared by groups of 2, V not shared: not one GQA layout. Left alone.
// CHECK-LABEL: func @gqa_groups_differ
// CHECK-NOT: kvcache.attention
// CHECK: linalg.batch_matmul
func.func @gqa_groups_differ(%q: tensor<4x8x16xf32>, %k: tensor<2x8x16xf32>, %v4: tensor<1x4x8x16xf32>) -> tensor<4x8x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %kb0 = tensor.empty() : tensor<2x2x8x16xf32>
  %kb = linalg.broadcast ins(%k : tensor<2x8x16xf32>) outs(%kb0 : tensor<2x2x8x16xf32>) dimensions = [1]
  %kr = tensor.collapse_shape %kb [[0, 1], [2], [3]] : tensor<2x2x8x16xf32> into tensor<4x8x16xf32>
  %vr = tensor.collapse_shape %v4 [[0, 1], [2], [3]] : tensor<1x4x8x16xf32> into tensor<4x8x16xf32>
  %s0 = tensor.empty() : tensor<4x8x8xf32>
  %sz = linalg.fill ins(%c0 : f32) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %s = linalg.batch_matmul indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>, affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%q, %kr : tensor<4x8x16xf32>, tensor<4x8x16xf32>) outs(%sz : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %scale = arith.constant 0.25 : f32
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %m = arith.mulf %in, %scale : f32
    linalg.yield %m : f32
  } -> tensor<4x8x8xf32>
  %p = linalg.softmax dimension(2) ins(%ss : tensor<4x8x8xf32>) outs(%s0 : tensor<4x8x8xf32>) -> tensor<4x8x8xf32>
  %o0 = tensor.empty() : tensor<4x8x16xf32>
  %oz = linalg.fill ins(%c0 : f32) outs(%o0 : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  // expected-remark @+1 {{not raised to kvcache.attention: V is not shared by the query heads like K is}}
  %o = linalg.batch_matmul ins(%p, %vr : tensor<4x8x8xf32>, tensor<4x8x16xf32>) outs(%oz : tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}
