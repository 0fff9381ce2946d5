// runtime-allocator=true: buffers are allocated and freed through MLIR's
// generic functions, which the Runner binds to the runtime's caching
// allocator; by default (and for mlir-runner) malloc/free.
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm="runtime-allocator=true" | FileCheck %s
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm | FileCheck %s --check-prefix=LIBC

// CHECK: llvm.call @_mlir_memref_to_llvm_alloc
// CHECK: llvm.call @_mlir_memref_to_llvm_free
// CHECK-NOT: @malloc
// LIBC: llvm.call @malloc
// LIBC: llvm.call @free
// The similarities are a temporary (only their sum is returned): an allocation.
func.func @sim(%k: tensor<2x300x64xf32>) -> tensor<2xf32> {
  %s = kvcache.similarity %k : tensor<2x300x64xf32> -> tensor<2x299xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<2xf32>) -> tensor<2xf32>
  %r = linalg.reduce ins(%s : tensor<2x299xf32>) outs(%z : tensor<2xf32>) dimensions = [1]
    (%a: f32, %b: f32) {
      %x = arith.addf %a, %b : f32
      linalg.yield %x : f32
    }
  return %r : tensor<2xf32>
}
