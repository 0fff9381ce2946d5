// RUN: kvmerge-opt %s --kvmerge-aot-record-abi | FileCheck %s

// The public functions with a body, in order, with their tensor-level types;
// private functions and declarations are not part of the ABI.
// CHECK-LABEL: module attributes {kvmerge.aot.abi = [
// CHECK-SAME: {function_type = (tensor<4xf32>, f32) -> tensor<4xf32>, sym_name = "add"},
// CHECK-SAME: {function_type = (tensor<?x8xbf16>, tensor<3xi8>, i64) -> (tensor<2xi32>, tensor<f64>), sym_name = "multi"}]}

// Tensor arguments are read-only for the bufferization (the caller's inputs
// are never written); scalars need no mark.
// CHECK: func.func @add(%{{.*}}: tensor<4xf32> {bufferization.writable = false}, %{{.*}}: f32)
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

// CHECK: func.func private @helper(%{{.*}}: tensor<?xf32>)
func.func private @helper(%x: tensor<?xf32>) -> tensor<?xf32> {
  return %x : tensor<?xf32>
}
func.func private @external(tensor<4xf32>) -> tensor<4xf32>

// CHECK: func.func @multi(%{{.*}}: tensor<?x8xbf16> {bufferization.writable = false}, %{{.*}}: tensor<3xi8> {bufferization.writable = false}, %{{.*}}: i64)
func.func @multi(%a: tensor<?x8xbf16>, %b: tensor<3xi8>, %n: i64) -> (tensor<2xi32>, tensor<f64>) {
  %c = arith.constant dense<1> : tensor<2xi32>
  %d = arith.constant dense<2.0> : tensor<f64>
  return %c, %d : tensor<2xi32>, tensor<f64>
}
