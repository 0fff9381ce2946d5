// The export lowering leaves upstream dialects on tensors only: every kvcache
// op becomes linalg.generic ops that gather their inputs with tensor.extract.
// RUN: kvmerge-opt %s -split-input-file --kvmerge-export-upstream | FileCheck %s

// CHECK-LABEL: func @compress
// CHECK-NOT: kvcache.
// CHECK-NOT: memref
// CHECK-NOT: bufferization
// CHECK: %[[SIM:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x15xf32>)
// CHECK:   linalg.index 0
// CHECK:   tensor.extract %arg0
// CHECK:   math.sqrt
// CHECK: %[[SEL:.*]]:2 = linalg.generic {{.*}} outs(%{{.*}}, %{{.*}} : tensor<2xi32>, tensor<2xi32>)
// CHECK:   tensor.extract %[[SIM]]
// CHECK: %[[SLOTS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x16xi32>)
// CHECK:   tensor.extract %[[SEL]]#0
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<2x8x4xf16>)
// CHECK:   arith.extf
// CHECK:   arith.truncf
// CHECK: return
func.func @compress(%k: tensor<2x16x4xf16>, %v: tensor<2x16x4xf16>, %a: tensor<2x16xf32>)
    -> (tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8, sink = 2, heavy = 0, sigma = auto>}
      : tensor<2x16x4xf16>, tensor<2x16x4xf16>, tensor<2x16xf32>
      -> tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x8x4xf16>, tensor<2x8x4xf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
}

// -----

// Spec v2: heavy hitters; one generic per head selects both the heavy hitters
// and the cuts from the similarities and the scores.
// CHECK-LABEL: func @compress_heavy
// CHECK-NOT: kvcache.
// CHECK: linalg.generic {{.*}} outs(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<2xi32>, tensor<2xi32>, tensor<2xi32>, tensor<2xi32>)
// CHECK:   tensor.extract %arg2
// CHECK: return
func.func @compress_heavy(%k: tensor<2x32x4xf32>, %v: tensor<2x32x4xf32>, %a: tensor<2x32xf32>)
    -> (tensor<2x16x4xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 16, heavy = 3>}
      : tensor<2x32x4xf32>, tensor<2x32x4xf32>, tensor<2x32xf32>
      -> tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return %0#0, %0#5 : tensor<2x16x4xf32>, tensor<2xi32>
}

// -----

// Attention over a compressed cache: masked logits, row statistics, P.V.
// CHECK-LABEL: func @decode
// CHECK-NOT: kvcache.
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<4x1x16xf32>)
// CHECK:   tensor.extract %arg3
// CHECK: linalg.generic {{.*}} outs(%{{.*}}, %{{.*}} : tensor<4x1xf32>, tensor<4x1xf32>)
// CHECK:   math.exp
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<4x1x8xf32>)
func.func @decode(%q: tensor<4x1x8xf16>, %k: tensor<2x16x8xf16>, %v: tensor<2x16x8xf16>, %len: tensor<2xi32>) -> tensor<4x1x8xf32> {
  %i = tensor.empty() : tensor<4x1x8xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf16>, tensor<2x16x8xf16>, tensor<2x16x8xf16>)
      lengths(%len : tensor<2xi32>) outs(%i : tensor<4x1x8xf32>)
  return %o : tensor<4x1x8xf32>
}

// -----

// The mask is read inside the logits generic (upstream ops only); append is
// a gather-style generic.
// CHECK-LABEL: func @masked_attention_and_append
// CHECK-SAME: %[[MASK:[^:]*]]: tensor<2x1x16xi1>
// CHECK: linalg.generic
// CHECK: tensor.extract %[[MASK]]
// CHECK: arith.andi
// CHECK-NOT: kvcache.
// CHECK: return
func.func @masked_attention_and_append(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<2x1x16xi1>, %a: tensor<2x1x8xf32>, %l: tensor<2xi32>) -> (tensor<4x2x8xf32>, tensor<2x17x8xf32>) {
  %o = tensor.empty() : tensor<4x2x8xf32>
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<2x1x16xi1>) outs(%o : tensor<4x2x8xf32>)
  %r, %n = kvcache.append %k, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x1x8xf32>, tensor<2xi32> -> tensor<2x17x8xf32>, tensor<2xi32>
  return %0, %r : tensor<4x2x8xf32>, tensor<2x17x8xf32>
}
