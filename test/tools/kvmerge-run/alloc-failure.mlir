// An allocation that fails inside compiled code (4 PiB here: more than any address space) is one clear
// error and exit code 1, not a write through a null pointer (issue 16).
// RUN: not kvmerge-run %s --input=f32=0 2>&1 | FileCheck %s
// CHECK: kvmerge: a compiled function could not allocate {{[0-9]+}} bytes (out of memory)
// CHECK-NOT: Stack dump

func.func @f(%x: tensor<f32>) -> tensor<f32> {
  %e = tensor.empty() : tensor<1125899906842624xf32>
  %c = arith.constant 1.0 : f32
  %f = linalg.fill ins(%c : f32) outs(%e : tensor<1125899906842624xf32>) -> tensor<1125899906842624xf32>
  %r = linalg.reduce ins(%f : tensor<1125899906842624xf32>) outs(%x : tensor<f32>) dimensions = [0]
    (%a: f32, %b: f32) { %s = arith.addf %a, %b : f32
      linalg.yield %s : f32 }
  return %r : tensor<f32>
}
