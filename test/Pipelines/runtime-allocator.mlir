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
func.func @sim(%k: tensor<2x300x64xf32>) -> tensor<2x299xf32> {
  %s = kvcache.similarity %k : tensor<2x300x64xf32> -> tensor<2x299xf32>
  return %s : tensor<2x299xf32>
}
