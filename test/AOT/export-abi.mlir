// RUN: kvmerge-opt %s --kvmerge-aot-record-abi --kvmerge-lower-to-llvm '--kvmerge-aot-export-abi=target="cpu x86-64-v3"' | FileCheck %s

// One packed entry point per function (args[i] points to argument i: for a
// memref to the pointer to its descriptor, for a scalar to its value),
// calling the C interface with inputs then out-params.
// CHECK-LABEL: llvm.func internal @__kvmerge_aot_entry_0(
// CHECK-SAME: %[[ARGS:.*]]: !llvm.ptr)
// CHECK:      %[[S0:.*]] = llvm.getelementptr %[[ARGS]][0] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT: %[[P0:.*]] = llvm.load %[[S0]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: %[[X:.*]] = llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: %[[S1:.*]] = llvm.getelementptr %[[ARGS]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT: %[[P1:.*]] = llvm.load %[[S1]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: %[[SC:.*]] = llvm.load %[[P1]] : !llvm.ptr -> f32
// CHECK-NEXT: %[[S2:.*]] = llvm.getelementptr %[[ARGS]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK-NEXT: %[[P2:.*]] = llvm.load %[[S2]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: %[[OUT:.*]] = llvm.load %[[P2]] : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: llvm.call @_mlir_ciface_add(%[[X]], %[[SC]], %[[OUT]]) : (!llvm.ptr, f32, !llvm.ptr) -> ()
// CHECK-NEXT: llvm.return

// CHECK-LABEL: llvm.func internal @__kvmerge_aot_entry_1(
// CHECK: llvm.call @_mlir_ciface_pair({{.*}}) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> ()

// The manifest (what kvmerge_aot_target / kvmerge_aot_function_at report)
// and the entry table, in module order; the recorded attribute is gone.
// CHECK: llvm.mlir.global external constant @__kvmerge_aot_manifest("kvmerge-aot-abi 1\0Atarget cpu x86-64-v3\0Afunction add 2 1\0Avalue in tensor f32 1 4 tensor<4xf32>\0Avalue in scalar f32 0 f32\0Avalue out tensor f32 1 4 tensor<4xf32>\0Afunction pair 1 2\0Avalue in tensor i32 2 -1 3 tensor<?x3xi32>\0Avalue out tensor i32 1 3 tensor<3xi32>\0Avalue out tensor i64 0 tensor<i64>\0Aend\0A\00")
// CHECK: llvm.mlir.global external constant @__kvmerge_aot_entries() {{.*}} : !llvm.array<2 x ptr>
// CHECK:   llvm.mlir.addressof @__kvmerge_aot_entry_0
// CHECK:   llvm.mlir.addressof @__kvmerge_aot_entry_1
// CHECK-NOT: kvmerge.aot.abi

func.func @add(%x: tensor<4xf32>, %s: f32) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
                       iterator_types = ["parallel"]}
      ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%a: f32, %b: f32):
    %y = arith.addf %a, %s : f32
    linalg.yield %y : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}

func.func @pair(%x: tensor<?x3xi32>) -> (tensor<3xi32>, tensor<i64>) {
  %c = arith.constant dense<7> : tensor<3xi32>
  %d = arith.constant dense<9000000000> : tensor<i64>
  return %c, %d : tensor<3xi32>, tensor<i64>
}
