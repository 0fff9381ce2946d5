// IREE's own input form (iree-compile --compile-to=input keeps sdpa as one
// iree_linalg_ext.attention, with util/hal ops around it) is not what
// kvmerge reads: a parse failure on it ends with a note naming the path
// that works (torch-mlir linalg-on-tensors -> kvmerge -> export-upstream ->
// iree-compile), and the op in generic form gets a warning from the pass.

// RUN: rm -rf %t && split-file %s %t
// RUN: not kvmerge-opt %t/custom.mlir --kvmerge-raise-attention 2>&1 | FileCheck %s --check-prefix=PARSE
// PARSE: error: Dialect `util' not found for custom op 'util.global'
// PARSE: note: this is IREE's input form (iree-compile --compile-to=input, or iree-turbine's export), whose dialects kvmerge does not read; run kvmerge on torch-mlir's linalg-on-tensors
// The same from standard input (what Python wrappers and pipes do).
// RUN: not kvmerge-opt --kvmerge-raise-attention < %t/custom.mlir 2>&1 | FileCheck %s --check-prefix=STDIN
// STDIN: <stdin>: note: this is IREE's input form
// RUN: kvmerge-opt %t/generic.mlir --allow-unregistered-dialect --kvmerge-raise-attention -verify-diagnostics -o /dev/null

//--- custom.mlir
util.global private @w = dense<0.0> : tensor<4xf32>

//--- generic.mlir
func.func @f(%q: tensor<4x8x16xf32>, %k: tensor<4x8x16xf32>, %v: tensor<4x8x16xf32>, %s: f32) -> tensor<4x8x16xf32> {
  %i = tensor.empty() : tensor<4x8x16xf32>
  // expected-warning @+1 {{IREE's input form (iree_linalg_ext.attention) is not raised: run kvmerge on the frontend's linalg-on-tensors (torch-mlir) and give iree-compile the output of --kvmerge-export-upstream (docs/iree.md)}}
  %o = "iree_linalg_ext.attention"(%q, %k, %v, %s, %i) : (tensor<4x8x16xf32>, tensor<4x8x16xf32>, tensor<4x8x16xf32>, f32, tensor<4x8x16xf32>) -> tensor<4x8x16xf32>
  return %o : tensor<4x8x16xf32>
}
