// Per-layer budgets: the i-th compressed prefill attention gets the i-th budget.
// RUN: kvmerge-opt %s --kvmerge-insert-compression="layer-budgets=0.75,12 heavy=1" | FileCheck %s
// RUN: echo '{"layer_budgets": [0.75, 12]}' > %t.json
// RUN: kvmerge-opt %s --kvmerge-insert-compression="budgets-file=%t.json" | FileCheck %s --check-prefix=FILE
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="layer-budgets=0.5" 2>&1 | FileCheck %s --check-prefix=COUNT
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budgets-file=%t.missing" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="policy=h2o heavy=2" 2>&1 | FileCheck %s --check-prefix=HEAVY
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=12 heavy=3" 2>&1 | FileCheck %s --check-prefix=TOOMANY

// CHECK-LABEL: func @two_layers
// CHECK-SAME: tensor<2x24x16xf32> {kvcache.role = "keys"}
// CHECK-SAME: tensor<2x12x16xf32> {kvcache.role = "keys"}
// CHECK: kvcache.compress {{.*}} {policy = #kvcache.policy<kvmerger, ratio = 7.500000e-01, heavy = 1>}
// CHECK: kvcache.compress {{.*}} {policy = #kvcache.policy<kvmerger, slots = 12, heavy = 1>}
// FILE: kvcache.compress {{.*}} {policy = #kvcache.policy<kvmerger, ratio = 7.500000e-01>}
// FILE: kvcache.compress {{.*}} {policy = #kvcache.policy<kvmerger, slots = 12>}
// COUNT: error: kvmerge-insert-compression: 1 per-layer budgets given, but this function compresses 2 prefill attentions (one budget each)
// MISSING: error: kvmerge-insert-compression: cannot read budgets-file
// HEAVY: 'heavy' (heavy hitters kept out of merging) is a kvmerger parameter; policy 'h2o' does not take it
// TOOMANY: error: 'kvcache.compress' op 'heavy' (3) needs 2 * heavy + 1 <= the 5 middle slots of a budget of 12 slots (at most 2)
func.func @two_layers(%q: tensor<4x32x16xf32>, %k: tensor<2x32x16xf32>, %v: tensor<2x32x16xf32>,
                      %k2: tensor<2x32x16xf32>, %v2: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<2x32x16xf32> {kvcache.role = "keys"}, tensor<2x32x16xf32> {kvcache.role = "values"},
        tensor<4x32x16xf32>, tensor<2x32x16xf32> {kvcache.role = "keys"}, tensor<2x32x16xf32> {kvcache.role = "values"}) {
  %i = tensor.empty() : tensor<4x32x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  %o2 = kvcache.attention ins(%o, %k2, %v2 : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v, %o2, %k2, %v2 : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>, tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>
}
