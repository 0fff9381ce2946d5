// Bad options and inputs without attention are clear errors.
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=0.5 mode=greedy" 2>&1 | FileCheck %s --check-prefix=MODE
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=1.5" 2>&1 | FileCheck %s --check-prefix=RATIO
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="policy=lru" 2>&1 | FileCheck %s --check-prefix=POLICY
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="sigma=-2.0" 2>&1 | FileCheck %s --check-prefix=SIGMA
// Out-of-range integers and option text that is not one value (issue 16).
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="sink=9223372036854775807" 2>&1 | FileCheck %s --check-prefix=SINK
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="sink=2147483648" 2>&1 | FileCheck %s --check-prefix=SINK2
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="recent=-2" 2>&1 | FileCheck %s --check-prefix=RECENT
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=9223372036854775808" 2>&1 | FileCheck %s --check-prefix=BUDGET
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=2147483648" 2>&1 | FileCheck %s --check-prefix=BUDGET2
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget='0.5, sink = 0'" 2>&1 | FileCheck %s --check-prefix=INJECT
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="eps=2" 2>&1 | FileCheck %s --check-prefix=EPS
// Floats in any spelling become exact MLIR literals (1e-5 is not MLIR syntax).
// RUN: kvmerge-opt %s --kvmerge-insert-compression="budget=16 sigma=1e-5 eps=0.1" | FileCheck %s --check-prefix=FLOATS
// RUN: kvmerge-opt %s --kvmerge-insert-compression="budget=5e-1 sigma=1e300" | FileCheck %s --check-prefix=FLOATS2
// RUN: echo 'func.func @f(%%a: tensor<4xf32>) -> tensor<4xf32> { return %%a : tensor<4xf32> }' > %t.mlir
// RUN: not kvmerge-opt %t.mlir --kvmerge-insert-compression 2>&1 | FileCheck %s --check-prefix=NONE

// MODE: error: invalid kvmerge-insert-compression option mode=greedy: expected budget or threshold
// MODE-NOT: see current operation
// RATIO: error: invalid kvmerge-insert-compression option budget=1.5: expected a ratio in (0, 1] (e.g. 0.5) or a number of slots in [1, 2147483647]
// POLICY: error: invalid kvmerge-insert-compression option policy=lru: expected full, streaming, h2o or kvmerger
// SIGMA: error: invalid kvmerge-insert-compression option sigma=-2.0: expected auto, paper or a finite positive number
// SINK: error: invalid kvmerge-insert-compression option sink=9223372036854775807: expected an integer in [0, 2147483647]
// SINK2: error: invalid kvmerge-insert-compression option sink=2147483648: expected an integer in [0, 2147483647]
// RECENT: error: invalid kvmerge-insert-compression option recent=-2: expected -1 (the default, ceil(B / 4)) or an integer in [0, 2147483647]
// BUDGET: error: invalid kvmerge-insert-compression option budget=9223372036854775808: expected a ratio in (0, 1] (e.g. 0.5) or a number of slots in [1, 2147483647]
// BUDGET2: error: invalid kvmerge-insert-compression option budget=2147483648: expected
// INJECT: error: invalid kvmerge-insert-compression option budget=0.5, sink = 0: expected a ratio
// EPS: error: invalid kvmerge-insert-compression option eps=2.00000000000000000e+00: expected a cosine similarity in [-1, 1]
// FLOATS: #kvcache.policy<kvmerger, slots = 16, eps = 1.000000e-01, sigma = 1.000000e-05>
// FLOATS2: #kvcache.policy<kvmerger, ratio = 5.000000e-01, sigma = 1.000000e+300>
// NONE: error: kvmerge-insert-compression found no attention: run --kvmerge-raise-attention first or write kvcache.attention

func.func @prefill(%q: tensor<4x32x16xf32>, %k: tensor<2x32x16xf32>, %v: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<2x32x16xf32> {kvcache.role = "keys"}, tensor<2x32x16xf32> {kvcache.role = "values"}) {
  %i = tensor.empty() : tensor<4x32x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>
}
