// The conversion expects compress to be decomposed first and says so.
// RUN: kvmerge-opt %s --convert-kvcache-to-loops -verify-diagnostics

func.func @f(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2xi32> {
  // expected-error @+1 {{'kvcache.compress' op must be decomposed first (run kvmerge-decompose-compress)}}
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 1>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#5 : tensor<2xi32>
}
