// RUN: kvmerge-opt %s --kvmerge-aot-record-abi -split-input-file -verify-diagnostics

// expected-error @below {{result 0 of 'dyn' has type 'tensor<?xf32>': results must have static shapes, because the caller allocates every output}}
func.func @dyn(%x: tensor<?xf32>) -> tensor<?xf32> {
  return %x : tensor<?xf32>
}

// -----

// expected-error @below {{argument 0 of 'unsigned' has type 'tensor<4xui32>': the element type must be f16, bf16, f32, f64, i8, i32 or i64}}
func.func @unsigned(%x: tensor<4xui32>) -> tensor<4xi32> {
  %c = arith.constant dense<0> : tensor<4xi32>
  return %c : tensor<4xi32>
}

// -----

// expected-error @below {{argument 0 of 'mem' has type 'memref<4xf32>': arguments must be ranked tensors or scalars of f16, bf16, f32, f64, i8, i32 or i64}}
func.func @mem(%x: memref<4xf32>) -> tensor<4xf32> {
  %t = bufferization.to_tensor %x : memref<4xf32> to tensor<4xf32>
  return %t : tensor<4xf32>
}

// -----

// expected-error @below {{result 0 of 'scalar' has type 'f32': results must be ranked tensors}}
func.func @scalar(%x: f32) -> f32 {
  return %x : f32
}

// -----

// expected-error @below {{argument 0 of 'unranked' has type 'tensor<*xf32>': arguments must be ranked tensors or scalars}}
func.func @unranked(%x: tensor<*xf32>) -> tensor<4xf32> {
  %c = arith.constant dense<0.0> : tensor<4xf32>
  return %c : tensor<4xf32>
}

// -----

// expected-error @below {{argument 0 of 'enc' has type 'tensor<4xf32, "x">': tensors with an encoding have no C ABI}}
func.func @enc(%x: tensor<4xf32, "x">) -> tensor<4xf32> {
  %c = arith.constant dense<0.0> : tensor<4xf32>
  return %c : tensor<4xf32>
}

// -----

// expected-error @below {{function name 'has space' is not an identifier ([A-Za-z_][A-Za-z0-9_.$]*), which the artifact ABI needs}}
func.func @"has space"(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----

// expected-error @below {{the module has no public function with a body to compile}}
module {
  func.func private @helper(%x: tensor<4xf32>) -> tensor<4xf32> {
    return %x : tensor<4xf32>
  }
}
