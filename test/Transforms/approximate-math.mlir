// kvmerge-approximate-math: f32 math.exp (scalar and vector) becomes
// upstream's polynomial approximation; f64 exp and other math ops stay.
// RUN: kvmerge-opt %s --kvmerge-approximate-math | FileCheck %s
// The CPU pipeline runs it: no call of the library's expf remains.
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm | FileCheck %s --check-prefix=LLVM

// CHECK-LABEL: func @exp_f32
// CHECK-NOT: math.exp
// CHECK: math.fma
// CHECK: arith.shli
// CHECK: arith.bitcast {{.*}} : i32 to f32
// LLVM-LABEL: llvm.func @exp_f32
// LLVM-NOT: llvm.intr.exp
// LLVM: llvm.intr.fma
func.func @exp_f32(%x: f32) -> f32 {
  %y = math.exp %x : f32
  return %y : f32
}

// CHECK-LABEL: func @exp_vector
// CHECK-NOT: math.exp
// CHECK: math.fma {{.*}} : vector<8xf32>
func.func @exp_vector(%x: vector<8xf32>) -> vector<8xf32> {
  %y = math.exp %x : vector<8xf32>
  return %y : vector<8xf32>
}

// CHECK-LABEL: func @kept
// CHECK: math.exp {{.*}} : f64
// CHECK: math.sqrt {{.*}} : f32
// LLVM-LABEL: llvm.func @kept
// LLVM: llvm.intr.exp({{.*}}) : (f64) -> f64
func.func @kept(%x: f64, %y: f32) -> (f64, f32) {
  %a = math.exp %x : f64
  %b = math.sqrt %y : f32
  return %a, %b : f64, f32
}
