// RUN: kvmerge-opt %s -split-input-file --kvmerge-outline-parallel-loops | FileCheck %s

// A 2-D loop with constant bounds: the launch gets the folded trip count
// (8 x 16) and the captures; the body delinearizes (last dimension fastest)
// and gets its constants cloned.
// CHECK-LABEL: func.func @two_d(
// CHECK-SAME:    %[[A:.*]]: memref<8x16xf32>, %[[B:.*]]: memref<8x16xf32>, %[[S:.*]]: f32)
// CHECK:         %[[N:.*]] = arith.constant 128 : index
// CHECK:         call @__kvmerge_parallel_launch(%[[N]], %[[A]], %[[S]], %[[B]])
// CHECK-NOT:     scf.parallel
// CHECK:       func.func private @__kvmerge_parallel_body(%[[BEGIN:.*]]: index, %[[END:.*]]: index, %[[BA:.*]]: memref<8x16xf32>, %[[BS:.*]]: f32, %[[BB:.*]]: memref<8x16xf32>)
// CHECK-DAG:     %[[C16:.*]] = arith.constant 16 : index
// CHECK:         scf.for %[[L:.*]] = %[[BEGIN]] to %[[END]]
// CHECK:           %[[J:.*]] = arith.remui %[[L]], %[[C16]]
// CHECK:           %[[I:.*]] = arith.divui %[[L]], %[[C16]]
// CHECK:           memref.load %[[BA]]
// CHECK:           arith.mulf %{{.*}}, %[[BS]]
// CHECK:           memref.store
// CHECK:       func.func private @__kvmerge_parallel_launch(index, memref<8x16xf32>, f32, memref<8x16xf32>)
// CHECK-SAME:    attributes {kvmerge.parallel_body = @__kvmerge_parallel_body}
func.func @two_d(%a: memref<8x16xf32>, %b: memref<8x16xf32>, %s: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%c8, %c16) step (%c1, %c1) {
    %x = memref.load %a[%i, %j] : memref<8x16xf32>
    %y = arith.mulf %x, %s : f32
    memref.store %y, %b[%i, %j] : memref<8x16xf32>
    scf.reduce
  }
  return
}

// -----

// Dynamic bounds: the trip count max(ceildiv(ub - lb, step), 0) is computed
// by the caller and passed with the bound and step; a nested scf.parallel
// stays inside the body (sequential there); the loop with a reduction is
// not outlined.
// CHECK-LABEL: func.func @dynamic(
// CHECK-SAME:    %[[A:.*]]: memref<?xf32>, %[[LB:.*]]: index, %[[UB:.*]]: index, %[[ST:.*]]: index)
// CHECK:         %[[SPAN:.*]] = arith.subi %[[UB]], %[[LB]]
// CHECK:         %[[CNT:.*]] = arith.ceildivsi %[[SPAN]], %[[ST]]
// CHECK:         %[[POS:.*]] = arith.maxsi %[[CNT]], %{{.*}}
// CHECK:         %[[N:.*]] = arith.muli %{{.*}}, %[[POS]]
// CHECK:         call @__kvmerge_parallel_launch(%[[N]], %[[LB]], %[[ST]], %[[POS]], %[[A]])
// CHECK:         scf.parallel {{.*}} init
// CHECK:         scf.reduce(
// CHECK:       func.func private @__kvmerge_parallel_body(%{{.*}}: index, %{{.*}}: index, %[[BLB:.*]]: index, %[[BST:.*]]: index, %{{.*}}: index, %{{.*}}: memref<?xf32>)
// CHECK:         scf.for %[[L:.*]] =
// CHECK:           %[[OFF:.*]] = arith.muli %[[L]], %[[BST]]
// CHECK:           %[[IV:.*]] = arith.addi %[[BLB]], %[[OFF]]
// CHECK:           scf.parallel
// CHECK:             memref.store %{{.*}}, %{{.*}}[%[[IV]]]
func.func @dynamic(%a: memref<?xf32>, %lb: index, %ub: index, %st: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%i) = (%lb) to (%ub) step (%st) {
    scf.parallel (%k) = (%c0) to (%c4) step (%c1) {
      memref.store %f, %a[%i] : memref<?xf32>
      scf.reduce
    }
    scf.reduce
  }
  %zero = arith.constant 0.0 : f32
  %sum = scf.parallel (%i) = (%c0) to (%c4) step (%c1) init (%zero) -> f32 {
    %x = memref.load %a[%i] : memref<?xf32>
    scf.reduce(%x : f32) {
    ^bb0(%l: f32, %r: f32):
      %s = arith.addf %l, %r : f32
      scf.reduce.return %s : f32
    }
  }
  return %sum : f32
}

// -----

// Two loops: two bodies and launches with distinct names.
// CHECK-LABEL: func.func @two_loops
// CHECK:         call @__kvmerge_parallel_launch(
// CHECK:         call @__kvmerge_parallel_launch_{{[0-9]+}}(
// CHECK-DAG:   func.func private @__kvmerge_parallel_launch({{.*}} attributes {kvmerge.parallel_body = @__kvmerge_parallel_body}
// CHECK-DAG:   func.func private @__kvmerge_parallel_launch_{{[0-9]+}}({{.*}} attributes {kvmerge.parallel_body = @__kvmerge_parallel_body_0}
func.func @two_loops(%a: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %f, %a[%i] : memref<4xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %f, %a[%i] : memref<4xf32>
    scf.reduce
  }
  return
}
