// RUN: not kvmerge-opt %s --convert-kvcache-to-gpu 2>&1 | FileCheck %s
// CHECK: error: 'kvcache.compress' op must be decomposed first (run kvmerge-decompose-compress)
func.func @compress(%k: tensor<2x100x64xf16>, %v: tensor<2x100x64xf16>, %a: tensor<2x100xf32>)
    -> (tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>, tensor<2xi32>) {
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5>}
      : tensor<2x100x64xf16>, tensor<2x100x64xf16>, tensor<2x100xf32>
      -> tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>, tensor<2xi32>
  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5
      : tensor<2x50x64xf16>, tensor<2x50x64xf16>, tensor<2x50xi32>, tensor<2x50xi32>, tensor<2x50xf32>, tensor<2xi32>
}
