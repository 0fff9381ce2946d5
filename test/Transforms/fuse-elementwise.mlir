// RUN: kvmerge-opt %s --split-input-file --linalg-generalize-named-ops \
// RUN:   --kvmerge-fuse-elementwise | FileCheck %s

// An elementwise chain (SiLU-like) becomes one loop nest.

// CHECK-LABEL: func.func @chain(
// CHECK-COUNT-1: linalg.generic
// CHECK-NOT:     linalg.generic
// CHECK:         math.exp
// CHECK:         arith.mulf
func.func @chain(%x: tensor<8x16xf32>) -> tensor<8x16xf32> {
  %e = tensor.empty() : tensor<8x16xf32>
  %0 = linalg.exp ins(%x : tensor<8x16xf32>) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  %1 = linalg.mul ins(%0, %x : tensor<8x16xf32>, tensor<8x16xf32>) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  return %1 : tensor<8x16xf32>
}

// -----

// A weight transpose computes nothing: it folds into the matmul's indexing
// map (the weight is read as [n, k]), and no transposed tensor is left.

// CHECK-DAG:   #[[$A:.+]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG:   #[[$W:.+]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %[[X:.+]]: tensor<4x64xf32>, %[[W:.+]]: tensor<32x64xf32>
// CHECK:         %[[Y:.+]] = linalg.generic {indexing_maps = [#[[$A]], #[[$W]], {{.*}}], iterator_types = ["parallel", "parallel", "reduction"]}
// CHECK-SAME:      ins(%[[X]], %[[W]] :
// CHECK:         return %[[Y]]
func.func @linear(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%e : tensor<64x32xf32>) permutation = [1, 0]
  %z = tensor.empty() : tensor<4x32xf32>
  %f = linalg.fill ins(%cst : f32) outs(%z : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>)
                     outs(%f : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// A normalization (rsqrt per element of x) feeding a matmul stays its own
// loop nest: fused, it would run once per multiply-add (32 times per
// element here, 49152 times in a real lm_head).

// CHECK-LABEL: func.func @norm_then_linear(
// CHECK:         %[[N:.+]] = linalg.generic
// CHECK:           math.rsqrt
// CHECK:         linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME:      ins(%[[N]],
// CHECK-NOT:       math.rsqrt
// CHECK:         return
func.func @norm_then_linear(%x: tensor<4x64xf32>, %w: tensor<64x32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x64xf32>
  %n = linalg.rsqrt ins(%x : tensor<4x64xf32>) outs(%e : tensor<4x64xf32>) -> tensor<4x64xf32>
  %z = tensor.empty() : tensor<4x32xf32>
  %f = linalg.fill ins(%cst : f32) outs(%z : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%n, %w : tensor<4x64xf32>, tensor<64x32xf32>)
                     outs(%f : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// A long chain fuses in rounds of disjoint pairs (O(n log n) body clones, not
// the O(n^2) of fusing one link at a time: 4000 chained adds took 15 s in
// this pass before, 0.6 s now); the result is the same single loop nest with
// the body in chain order.

// CHECK-LABEL: func.func @long_chain(
// CHECK-COUNT-1: linalg.generic
// CHECK-NOT:     linalg.generic
// CHECK:         math.exp
// CHECK-NEXT:    arith.addf
// CHECK-NEXT:    arith.mulf
// CHECK-NEXT:    arith.subf
// CHECK-NEXT:    math.sqrt
// CHECK-NEXT:    arith.addf
// CHECK-NEXT:    arith.mulf
// CHECK-NEXT:    linalg.yield
func.func @long_chain(%x: tensor<16xf32>) -> tensor<16xf32> {
  %e = tensor.empty() : tensor<16xf32>
  %0 = linalg.exp ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %1 = linalg.add ins(%0, %x : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %2 = linalg.mul ins(%1, %x : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %3 = linalg.sub ins(%2, %x : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %4 = linalg.sqrt ins(%3 : tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %5 = linalg.add ins(%4, %x : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %6 = linalg.mul ins(%5, %x : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  return %6 : tensor<16xf32>
}

// -----

// v[i] = v[i-1] + v[i-2]: every value has two uses until the op after it is
// fused, so fusion can only proceed from the end, the fused op absorbing one
// producer after another within one round. Still one loop nest.

// CHECK-LABEL: func.func @two_use_chain(
// CHECK-COUNT-1: linalg.generic
// CHECK-NOT:     linalg.generic
// CHECK-COUNT-5: arith.addf
// CHECK-NOT:     arith.addf
// CHECK:         linalg.yield
func.func @two_use_chain(%a: tensor<16xf32>, %b: tensor<16xf32>) -> tensor<16xf32> {
  %e = tensor.empty() : tensor<16xf32>
  %0 = linalg.add ins(%a, %b : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %1 = linalg.add ins(%0, %a : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %2 = linalg.add ins(%1, %0 : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %3 = linalg.add ins(%2, %1 : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  %4 = linalg.add ins(%3, %2 : tensor<16xf32>, tensor<16xf32>) outs(%e : tensor<16xf32>) -> tensor<16xf32>
  return %4 : tensor<16xf32>
}
