// One SmolLM2-135M layer's KV cache (3 KV heads, 1024 tokens, head dim 64,
// f16) compressed to half its size with KVMerger, then one decode step of
// its 9 query heads (GQA 3:1) attending to the compressed cache.
//
//   kvmerge-opt examples/compress-smollm2.mlir --kvmerge-decompose-compress
//   kvmerge-run examples/compress-smollm2.mlir --function=compress_layer \
//       --input=@keys.npy --input=@values.npy --input=@scores.npy
//
// scripts/run-example.sh runs both functions on real SmolLM2 K/V states
// (test/data/smollm2_kv.npz) and compares them with kvmerge.reference.

!keys = tensor<3x1024x64xf16>
!scores = tensor<3x1024xf32>
!ckeys = tensor<3x512x64xf16>
!slots = tensor<3x512xi32>
!slot_scores = tensor<3x512xf32>
!lengths = tensor<3xi32>

func.func @compress_layer(%k: !keys, %v: !keys, %a: !scores)
    -> (!ckeys, !ckeys, !slots, !slots, !slot_scores, !lengths) {
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, ratio = 0.5>}
      : !keys, !keys, !scores -> !ckeys, !ckeys, !slots, !slots, !slot_scores, !lengths
  return %r#0, %r#1, %r#2, %r#3, %r#4, %r#5
      : !ckeys, !ckeys, !slots, !slots, !slot_scores, !lengths
}

func.func @decode_step(%q: tensor<9x1x64xf16>, %k: !ckeys, %v: !ckeys, %len: !lengths)
    -> tensor<9x1x64xf32> {
  %init = tensor.empty() : tensor<9x1x64xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<9x1x64xf16>, !ckeys, !ckeys)
      lengths(%len : !lengths) outs(%init : tensor<9x1x64xf32>)
  return %o : tensor<9x1x64xf32>
}
