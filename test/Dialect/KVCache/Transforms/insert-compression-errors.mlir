// Bad options and inputs without attention are clear errors.
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=0.5 mode=greedy" 2>&1 | FileCheck %s --check-prefix=MODE
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="budget=1.5" 2>&1 | FileCheck %s --check-prefix=RATIO
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="policy=lru" 2>&1 | FileCheck %s --check-prefix=POLICY
// RUN: not kvmerge-opt %s --kvmerge-insert-compression="sigma=-2.0" 2>&1 | FileCheck %s --check-prefix=SIGMA
// RUN: echo 'func.func @f(%%a: tensor<4xf32>) -> tensor<4xf32> { return %%a : tensor<4xf32> }' > %t.mlir
// RUN: not kvmerge-opt %t.mlir --kvmerge-insert-compression 2>&1 | FileCheck %s --check-prefix=NONE

// MODE: error: invalid kvmerge-insert-compression options (#kvcache.policy<kvmerger, ratio = 0.5, {{.*}}): unknown mode 'greedy', expected 'budget' or 'threshold'
// MODE-NOT: see current operation
// RATIO: error: invalid kvmerge-insert-compression options ({{.*}}): 'ratio' must be in (0, 1], got 1.5
// POLICY: error: invalid kvmerge-insert-compression options ({{.*}}): unknown policy 'lru', expected one of full, streaming, h2o, kvmerger
// SIGMA: error: invalid kvmerge-insert-compression options ({{.*}}): sigma must be a finite positive number, got -2
// NONE: error: kvmerge-insert-compression found no attention: run --kvmerge-raise-attention first or write kvcache.attention

func.func @prefill(%q: tensor<4x32x16xf32>, %k: tensor<2x32x16xf32>, %v: tensor<2x32x16xf32>)
    -> (tensor<4x32x16xf32>, tensor<2x32x16xf32> {kvcache.role = "keys"}, tensor<2x32x16xf32> {kvcache.role = "values"}) {
  %i = tensor.empty() : tensor<4x32x16xf32>
  %o = kvcache.attention ins(%q, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>) outs(%i : tensor<4x32x16xf32>) causal
  return %o, %k, %v : tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<2x32x16xf32>
}
