// Structure of the kvcache -> loops conversion: parallel loops on buffers,
// reassociable reductions (except the similarity's fixed order), tensors
// bridged with to_buffer / to_tensor.
// RUN: kvmerge-opt %s -split-input-file --convert-kvcache-to-loops --canonicalize --cse | FileCheck %s

// Similarity: one parallel iteration per (head, link); the head dim is summed
// in the order every path shares (docs/reference.md, choice 3): f64 products
// and sums in 16 vector lanes, chunk after chunk (the partial last chunk a
// masked load), lanes combined by halving, no fastmath flags, then the f64
// cosine rounded once to f32.
// CHECK-LABEL: func @similarity
// CHECK-SAME: (%[[K:.*]]: tensor<2x16x40xf16>)
// CHECK: %[[OUT:.*]] = memref.alloc() : memref<2x15xf32>
// CHECK: scf.parallel (%[[H:.*]], %[[T:.*]]) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}})
// CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf64>, vector<16xf64>, vector<16xf64>)
// CHECK:     vector.load {{.*}} : memref<2x16x40xf16>, vector<16xf16>
// CHECK:     arith.extf {{.*}} : vector<16xf16> to vector<16xf32>
// CHECK:     arith.extf {{.*}} : vector<16xf32> to vector<16xf64>
// CHECK:     arith.mulf {{.*}} : vector<16xf64>{{$}}
// CHECK:     arith.addf {{.*}} : vector<16xf64>{{$}}
// CHECK:   vector.constant_mask [8] : vector<16xi1>
// CHECK:   vector.maskedload
// CHECK:   vector.extract_strided_slice {{.*}} {offsets = [8], sizes = [8], strides = [1]}
// CHECK:   arith.addf {{.*}} : vector<8xf64>{{$}}
// CHECK:   math.sqrt {{.*}} : f64
// CHECK:   arith.divf {{.*}} : f64
// CHECK:   arith.truncf {{.*}} : f64 to f32
// CHECK:   memref.store {{.*}}, %[[OUT]][%[[H]], %[[T]]]
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[OUT]] restrict writable
// CHECK: return %[[R]]
func.func @similarity(%k: tensor<2x16x40xf16>) -> tensor<2x15xf32> {
  %s = kvcache.similarity %k : tensor<2x16x40xf16> -> tensor<2x15xf32>
  return %s : tensor<2x15xf32>
}

// -----

// Merge-set identification: per head, the weakest links are found by a
// 32-step bitwise search on order-preserving keys (each step a parallel
// count, scf.reduce), ties by a 31-step rank search; then a two-level scan
// writes the slot map. Threshold mode first counts links below eps. The
// keys are computed once per head into an i32 scratch the counts read.
// CHECK-LABEL: func @merge_sets
// CHECK-DAG: %[[C31:.*]] = arith.constant 31 : index
// CHECK-DAG: %[[C32:.*]] = arith.constant 32 : index
// CHECK: %[[KEYS:.*]] = memref.alloc() : memref<2x16xi32>
// CHECK: scf.parallel (%[[HEAD:.*]]) =
// CHECK:   scf.for
// CHECK:     arith.bitcast {{.*}} : f32 to i32
// CHECK:     memref.store {{.*}}, %[[KEYS]]
// CHECK:   scf.parallel {{.*}} init (%{{.*}}) -> i32
// CHECK:     memref.load %[[KEYS]]
// CHECK:     arith.cmpi ult
// CHECK:     scf.reduce
// CHECK:       arith.addi
// CHECK:   scf.if
// CHECK:     scf.for %{{.*}} = %{{.*}} to %[[C32]]
// CHECK:       scf.parallel {{.*}} init
// CHECK:     scf.for %{{.*}} = %{{.*}} to %[[C31]]
// CHECK:   scf.parallel
// CHECK:   scf.for {{.*}} iter_args
// CHECK: bufferization.to_tensor {{.*}} : memref<2x16xi32> to tensor<2x16xi32>
// CHECK: bufferization.to_tensor {{.*}} : memref<2xi32> to tensor<2xi32>
func.func @merge_sets(%s: tensor<2x15xf32>) -> (tensor<2x16xi32>, tensor<2xi32>) {
  %slots, %len = kvcache.merge_sets %s sink(2) recent(2) middle(4) mode(threshold) eps(0.5)
      : tensor<2x15xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return %slots, %len : tensor<2x16xi32>, tensor<2xi32>
}

// -----

// StreamingLLM (middle(0)) needs no selection at all: no bitwise search.
// CHECK-LABEL: func @select_streaming
// CHECK-NOT: arith.constant 32 : index
// CHECK: scf.parallel
// CHECK: return
func.func @select_streaming(%a: tensor<2x16xf32>) -> (tensor<2x16xi32>, tensor<2xi32>) {
  %slots, %len = kvcache.select_sets %a sink(4) recent(4) middle(0)
      : tensor<2x16xf32> -> tensor<2x16xi32>, tensor<2xi32>
  return %slots, %len : tensor<2x16xi32>, tensor<2xi32>
}

// -----

// Merge: one parallel iteration per (head, slot); singletons are copied,
// larger sets get Gaussian weights (math.exp); bf16 storage is reduced over
// the set in f32 per element and rounded once. No stack scratch.
// CHECK-LABEL: func @merge
// CHECK-NOT: memref.alloca
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}})
// CHECK: scf.parallel (%[[H:.*]], %[[S:.*]]) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}})
// CHECK:   scf.if
// CHECK:     scf.for {{.*}} iter_args({{.*}}) -> (index, f32, f32)
// CHECK:     scf.if
// CHECK:     } else {
// CHECK:       math.exp
// CHECK:       scf.for
// CHECK:         scf.for {{.*}} -> (f32)
// CHECK:           arith.extf {{.*}} : bf16 to f32
// CHECK:         arith.truncf {{.*}} : f32 to bf16
func.func @merge(%k: tensor<2x16x8xbf16>, %v: tensor<2x16x8xbf16>, %a: tensor<2x16xf32>,
                 %slots: tensor<2x16xi32>, %len: tensor<2xi32>) -> tensor<2x8x8xbf16> {
  %k0 = tensor.empty() : tensor<2x8x8xbf16>
  %p0 = tensor.empty() : tensor<2x8xi32>
  %s0 = tensor.empty() : tensor<2x8xf32>
  %r:5 = kvcache.merge ins(%k, %v, %a : tensor<2x16x8xbf16>, tensor<2x16x8xbf16>, tensor<2x16xf32>)
      slots(%slots, %len : tensor<2x16xi32>, tensor<2xi32>)
      outs(%k0, %k0, %p0, %p0, %s0 : tensor<2x8x8xbf16>, tensor<2x8x8xbf16>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>)
  return %r#0 : tensor<2x8x8xbf16>
}

// -----

// Decode attention: one parallel iteration per (KV head, query) (the unit
// query dimension folds away). Its valid slots are walked in blocks of 64,
// each block serving the G query heads of the group in turn (a block of K/V
// rows read once for the group). Per query head a blocked online softmax:
// the block's logits on a stack row and their max, one rescale per block,
// then the weights and the weighted value rows; the running max and
// normalizer stay in a scratch buffer between blocks. f16 output
// accumulates in an f32 buffer.
// CHECK-LABEL: func @attention
// CHECK: %[[OUT:.*]] = memref.alloc() : memref<4x1x8xf16>
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<4x1x8xf32>
// CHECK: %[[STATE:.*]] = memref.alloc() : memref<2x4x1xf32>
// CHECK: scf.parallel (%[[H:.*]]) =
// CHECK:   tensor.extract %{{.*}}[%[[H]]] : tensor<2xi32>
// CHECK:   arith.minsi
// CHECK:   %[[ROW:.*]] = memref.alloca() : memref<64xf32>
// CHECK:   scf.for %[[T0:.*]] = %{{.*}} to %{{.*}} step %c64
// CHECK:     scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK:       memref.load %[[STATE]][%c0, %[[J]], %c0]
// CHECK:       scf.for %[[U:[^ ]*]] = {{.*}} -> (f32)
// CHECK:         %[[T:.*]] = arith.addi %[[T0]], %[[U]]
// CHECK:         tensor.extract %{{.*}}[%[[H]], %[[T]], %{{.*}}] : tensor<2x16x8xf16>
// CHECK:         math.log
// CHECK:         memref.store %{{.*}}, %[[ROW]][%[[U]]]
// CHECK:         arith.maximumf
// CHECK:       math.exp
// CHECK:       scf.for
// CHECK:         math.exp
// CHECK:       memref.store {{.*}}, %[[ACC]]
// CHECK:       memref.store {{.*}}, %[[ACC]]
// CHECK:       memref.store {{.*}}, %[[STATE]]
// CHECK:   arith.truncf {{.*}} : f32 to f16
// CHECK:   memref.store {{.*}}, %[[OUT]]
func.func @attention(%q: tensor<4x1x8xf16>, %k: tensor<2x16x8xf16>, %v: tensor<2x16x8xf16>,
                     %len: tensor<2xi32>, %cnt: tensor<2x16xi32>) -> tensor<4x1x8xf16> {
  %o0 = tensor.empty() : tensor<4x1x8xf16>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x1x8xf16>, tensor<2x16x8xf16>, tensor<2x16x8xf16>)
      lengths(%len : tensor<2xi32>) counts(%cnt : tensor<2x16xi32>) outs(%o0 : tensor<4x1x8xf16>) count_bias
  return %o : tensor<4x1x8xf16>
}

// -----

// Accumulated scores: per KV head, G query heads x observed queries.
// CHECK-LABEL: func @accumulated_scores
// CHECK: scf.parallel (%{{.*}}) =
// CHECK:   scf.for
// CHECK:     scf.for %{{.*}} = %[[FIRST:.*]] to
// CHECK:       math.exp
func.func @accumulated_scores(%q: tensor<4x16x8xf32>, %k: tensor<2x16x8xf32>) -> tensor<2x16xf32> {
  %a = kvcache.accumulated_scores %q, %k window(4) : tensor<4x16x8xf32>, tensor<2x16x8xf32> -> tensor<2x16xf32>
  return %a : tensor<2x16xf32>
}

// -----

// The fused merge is one parallel region per KV head; inside it, the
// head's links are scanned for similarities, the slot map is built, and
// its slots are merged one after another (sharing one f32 accumulation row
// per head for f16/bf16). Nothing after it iterates over heads again.
// CHECK-LABEL: func @fused_merge
// CHECK-SAME: (%[[K:[a-z0-9]+]]: tensor<2x16x8xf32>, %[[V:[a-z0-9]+]]: tensor<2x16x8xf32>
// CHECK: scf.parallel (%[[H:.*]]) = (%{{.*}}) to (%{{.*}}) step
// CHECK:   scf.parallel (%[[T:.*]]) =
// CHECK:     vector.maskedload %{{.*}}[%[[H]], %[[T]], %{{.*}}]
// CHECK:     math.sqrt
// CHECK:   scf.for {{.*}} iter_args
// CHECK:   scf.for %[[S:.*]] =
// CHECK:     tensor.extract %[[V]][%[[H]],
// CHECK: scf.reduce
// CHECK-NOT: scf.parallel
// CHECK: return
func.func @fused_merge(%k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %a: tensor<2x16xf32>) -> (tensor<2x8x8xf32>, tensor<2xi32>) {
  %k0 = tensor.empty() : tensor<2x8x8xf32>
  %p0 = tensor.empty() : tensor<2x8xi32>
  %s0 = tensor.empty() : tensor<2x8xf32>
  %l0 = tensor.empty() : tensor<2xi32>
  %r:6 = kvcache.fused_merge ins(%k, %v, %a : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16xf32>)
      outs(%k0, %k0, %p0, %p0, %s0, %l0 : tensor<2x8x8xf32>, tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>)
      sink(2) recent(2) middle(4) mode(budget)
  return %r#0, %r#5 : tensor<2x8x8xf32>, tensor<2xi32>
}

// -----

// A boolean mask turns invisible slots into -inf logits (row j / (Hq / Hm));
// the online softmax neither weights nor rescales while it has seen only
// -inf (the running max is -inf).
// CHECK-LABEL: func @masked_attention
// CHECK-SAME: %[[MASK:[^:]*]]: tensor<2x1x16xi1>
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) =
// CHECK: memref.load %{{.*}}[%c0, %[[J:[^,]*]], %{{.*}}]
// CHECK: %[[ROW:.*]] = arith.divui %[[J]], %c2
// CHECK: %[[VIS:.*]] = tensor.extract %[[MASK]][%[[ROW]], %c0, %{{.*}}] : tensor<2x1x16xi1>
// CHECK: %[[LOGIT:.*]] = arith.select %[[VIS]], %{{.*}}, %[[NINF:.*]] : f32
// CHECK: arith.maximumf %{{.*}}, %[[LOGIT]]
// CHECK: %[[MAX:.*]] = arith.maximumf
// CHECK: %[[NONE:.*]] = arith.cmpf oeq, %[[MAX]], %[[NINF]]
// CHECK: arith.select %[[NONE]]
func.func @masked_attention(%q: tensor<4x2x8xf32>, %k: tensor<2x16x8xf32>, %v: tensor<2x16x8xf32>, %m: tensor<2x1x16xi1>) -> tensor<4x2x8xf32> {
  %o = tensor.empty() : tensor<4x2x8xf32>
  %0 = kvcache.attention ins(%q, %k, %v : tensor<4x2x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) mask(%m : tensor<2x1x16xi1>) outs(%o : tensor<4x2x8xf32>)
  return %0 : tensor<4x2x8xf32>
}

// -----

// Append: one parallel iteration per head; a slot reads the cache below the
// (clamped) length, then the added entries, then zero.
// CHECK-LABEL: func @append
// CHECK: scf.parallel (%[[H:.*]]) =
// CHECK: %[[N:.*]] = arith.maxsi %{{.*}}, %c0
// CHECK: scf.for %[[S:.*]] = %c0 to %c17
// CHECK: %[[IN:.*]] = arith.cmpi slt, %[[S]], %[[N]]
// CHECK: scf.if %[[IN]]
// CHECK: tensor.extract %{{.*}}[%[[H]], %[[S]], %{{.*}}] : tensor<2x16x8xf32>
// CHECK: } else {
// CHECK: arith.subi %[[S]], %[[N]]
func.func @append(%c: tensor<2x16x8xf32>, %a: tensor<2x1x8xf32>, %l: tensor<2xi32>) -> (tensor<2x17x8xf32>, tensor<2xi32>) {
  %r, %n = kvcache.append %c, %a lengths(%l) : tensor<2x16x8xf32>, tensor<2x1x8xf32>, tensor<2xi32> -> tensor<2x17x8xf32>, tensor<2xi32>
  return %r, %n : tensor<2x17x8xf32>, tensor<2xi32>
}
