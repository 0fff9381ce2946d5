// RUN: kvmerge-opt %s --kvmerge-aot-export-abi -split-input-file -verify-diagnostics

// Without kvmerge-aot-record-abi before the lowering.
// expected-error @below {{no 'kvmerge.aot.abi' attribute: run kvmerge-aot-record-abi before lowering}}
module {
  llvm.func @f() {
    llvm.return
  }
}

// -----

// A C interface that does not match the recorded signature.
module attributes {kvmerge.aot.abi = [{function_type = (tensor<4xf32>) -> tensor<4xf32>, sym_name = "g"}]} {
  // expected-error @below {{expected '_mlir_ciface_g' to return nothing and take 2 arguments (inputs, then one out-param per result), got '!llvm.func<void (ptr)>'}}
  llvm.func @_mlir_ciface_g(%a: !llvm.ptr) {
    llvm.return
  }
}

// -----

module attributes {kvmerge.aot.abi = [{function_type = (f32) -> tensor<4xf32>, sym_name = "h"}]} {
  // expected-error @below {{argument 0 of '_mlir_ciface_h' has type '!llvm.ptr', which does not pass 'f32'}}
  llvm.func @_mlir_ciface_h(%a: !llvm.ptr, %b: !llvm.ptr) {
    llvm.return
  }
}

// -----

// expected-error @below {{malformed 'kvmerge.aot.abi' entry 0}}
module attributes {kvmerge.aot.abi = [1 : i32]} {
}
