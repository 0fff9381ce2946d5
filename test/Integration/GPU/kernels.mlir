// A set of modules that exercises every GPU kernel variant: KVMerger in
// budget and threshold mode (bf16, sigma paper), H2O (select_sets), and
// decode attention in the benchmark shape (Hq=32, Hkv=8, D=128, f16,
// lengths + count bias), plus causal f32 prefill. Used by the ptxas tests
// (test/Conversion/KVCacheToGPU/ptxas-*.mlir) and scripts/gpu-check.sh.
// RUN: kvmerge-opt %s --kvmerge-lower-to-nvvm | FileCheck %s
// CHECK-COUNT-13: gpu.binary @kvmerge_

func.func @kvmerger_bf16(%k: tensor<2x300x64xbf16>, %v: tensor<2x300x64xbf16>, %a: tensor<2x300xf32>)
    -> (tensor<2x100x64xbf16>, tensor<2x100x64xbf16>, tensor<2x100xi32>, tensor<2x100xi32>, tensor<2x100xf32>, tensor<2xi32>) {
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 100, mode = threshold, eps = 0.8, sigma = paper>}
      : tensor<2x300x64xbf16>, tensor<2x300x64xbf16>, tensor<2x300xf32>
      -> tensor<2x100x64xbf16>, tensor<2x100x64xbf16>, tensor<2x100xi32>, tensor<2x100xi32>, tensor<2x100xf32>, tensor<2xi32>
  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5
      : tensor<2x100x64xbf16>, tensor<2x100x64xbf16>, tensor<2x100xi32>, tensor<2x100xi32>, tensor<2x100xf32>, tensor<2xi32>
}

func.func @h2o_f16(%k: tensor<2x300x128xf16>, %v: tensor<2x300x128xf16>, %a: tensor<2x300xf32>)
    -> (tensor<2x150x128xf16>, tensor<2x150x128xf16>, tensor<2x150xi32>, tensor<2x150xi32>, tensor<2x150xf32>, tensor<2xi32>) {
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<h2o, ratio = 0.5>}
      : tensor<2x300x128xf16>, tensor<2x300x128xf16>, tensor<2x300xf32>
      -> tensor<2x150x128xf16>, tensor<2x150x128xf16>, tensor<2x150xi32>, tensor<2x150xi32>, tensor<2x150xf32>, tensor<2xi32>
  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5
      : tensor<2x150x128xf16>, tensor<2x150x128xf16>, tensor<2x150xi32>, tensor<2x150xi32>, tensor<2x150xf32>, tensor<2xi32>
}

func.func @decode_gqa4_d128(%q: tensor<32x1x128xf16>, %k: tensor<8x?x128xf16>, %v: tensor<8x?x128xf16>,
                            %len: tensor<8xi32>, %cnt: tensor<8x?xi32>) -> tensor<32x1x128xf16> {
  %init = tensor.empty() : tensor<32x1x128xf16>
  %o = kvcache.attention ins(%q, %k, %v : tensor<32x1x128xf16>, tensor<8x?x128xf16>, tensor<8x?x128xf16>)
      lengths(%len : tensor<8xi32>) counts(%cnt : tensor<8x?xi32>) outs(%init : tensor<32x1x128xf16>) count_bias
  return %o : tensor<32x1x128xf16>
}

func.func @prefill_causal_f32(%q: tensor<4x16x64xf32>, %k: tensor<2x16x64xf32>, %v: tensor<2x16x64xf32>) -> tensor<4x16x64xf32> {
  %init = tensor.empty() : tensor<4x16x64xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>)
      outs(%init : tensor<4x16x64xf32>) causal
  return %o : tensor<4x16x64xf32>
}
