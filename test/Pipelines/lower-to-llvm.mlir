// The CPU pipeline leaves only the LLVM dialect, with caller-allocated
// outputs and a C interface.
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm | FileCheck %s
// CHECK-NOT: kvcache.
// CHECK-NOT: tensor<
// CHECK-NOT: memref<
// CHECK: llvm.func @compress(
// CHECK: llvm.func @_mlir_ciface_compress(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK-SAME: attributes {llvm.emit_c_interface}
// CHECK-NOT: kvcache.
// CHECK-NOT: scf.
func.func @compress(%k: tensor<2x64x8xf16>, %v: tensor<2x64x8xf16>, %a: tensor<2x64xf32>)
    -> (tensor<2x16x8xf16>, tensor<2x16x8xf16>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>) {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 16, sink = 2>}
      : tensor<2x64x8xf16>, tensor<2x64x8xf16>, tensor<2x64xf32>
      -> tensor<2x16x8xf16>, tensor<2x16x8xf16>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
  return %0#0, %0#1, %0#2, %0#3, %0#4, %0#5 : tensor<2x16x8xf16>, tensor<2x16x8xf16>, tensor<2x16xi32>, tensor<2x16xi32>, tensor<2x16xf32>, tensor<2xi32>
}
