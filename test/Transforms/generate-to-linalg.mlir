// RUN: kvmerge-opt %s --split-input-file --kvmerge-generate-to-linalg | FileCheck %s

// tensor.generate (what a folded `full` compression leaves for positions and
// counts) becomes a linalg.generic reading its indices with linalg.index, which
// iree-compile takes.

// CHECK-LABEL: func.func @positions(
// CHECK-NOT:     tensor.generate
// CHECK:         %[[E:.+]] = tensor.empty() : tensor<3x8xi32>
// CHECK:         linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]{{.*}}outs(%[[E]]
// CHECK:           %[[S:.+]] = linalg.index 1 : index
// CHECK:           %[[I:.+]] = arith.index_cast %[[S]] : index to i32
// CHECK:           linalg.yield %[[I]] : i32
func.func @positions() -> tensor<3x8xi32> {
  %0 = tensor.generate {
  ^bb0(%h: index, %s: index):
    %i = arith.index_cast %s : index to i32
    tensor.yield %i : i32
  } : tensor<3x8xi32>
  return %0 : tensor<3x8xi32>
}

// -----

// Dynamic extents carry over to the tensor.empty.

// CHECK-LABEL: func.func @dynamic(
// CHECK-SAME:    %[[N:.+]]: index
// CHECK:         tensor.empty(%[[N]]) : tensor<2x?xf32>
// CHECK:         linalg.generic
func.func @dynamic(%n: index) -> tensor<2x?xf32> {
  %c = arith.constant 1.0 : f32
  %0 = tensor.generate %n {
  ^bb0(%i: index, %j: index):
    tensor.yield %c : f32
  } : tensor<2x?xf32>
  return %0 : tensor<2x?xf32>
}
