// kvmerge-aot --target=cpu: a shared object that runs without LLVM or MLIR,
// called through kvmerge-aot-run (no LLVM either). Inputs are written and
// outputs read back by kvmerge-run (as .npy files).
// RUN: rm -rf %t && split-file %s %t
// RUN: kvmerge-aot %t/add.mlir --target=cpu -o %t/libadd.so
// RUN: kvmerge-aot-run %t/libadd.so --list | FileCheck %s --check-prefix=LIST
// LIST: target: cpu x86-64-v3
// LIST-NEXT: add(tensor<4xf32>, f32) -> (tensor<4xf32>)
// LIST-NEXT: pair(tensor<?x3xi32>) -> (tensor<3xi32>, tensor<i64>)

// RUN: kvmerge-run %t/helpers.mlir --function=id --input=4xf32=1,2,3,4 --output=@%t/x.npy
// RUN: kvmerge-aot-run %t/libadd.so --function=add --input=@%t/x.npy --input=f32=0.5 --output=@%t/y.npy
// RUN: kvmerge-run %t/helpers.mlir --function=id --input=@%t/y.npy | FileCheck %s --check-prefix=ADD
// ADD: result[0]: 4xf32=1.5 2.5 3.5 4.5

// Several results, a dynamic input dimension, a rank-0 i64 beyond 32 bits,
// a strided slice (copied by the runtime's memrefCopy).
// RUN: kvmerge-run %t/helpers.mlir --function=mk --output=@%t/m.npy
// RUN: kvmerge-aot-run %t/libadd.so --function=pair --input=@%t/m.npy --output=@%t/p0.npy --output=@%t/p1.npy
// RUN: kvmerge-run %t/helpers.mlir --function=id3 --input=@%t/p0.npy | FileCheck %s --check-prefix=P0
// P0: result[0]: 3xi32=2 5 8
// RUN: kvmerge-run %t/helpers.mlir --function=idi64 --input=@%t/p1.npy | FileCheck %s --check-prefix=P1
// P1: result[0]: i64=9000000000
// A result without --output is only described.
// RUN: kvmerge-aot-run %t/libadd.so --function=pair --input=@%t/m.npy --output=@%t/q0.npy | FileCheck %s --check-prefix=SUMMARY
// SUMMARY: result[1]: tensor<i64> (no --output)
// RUN: kvmerge-aot-run %t/libadd.so --function=add --input=@%t/x.npy --input=f32=1 --repeat=3 | FileCheck %s --check-prefix=REPEAT
// REPEAT: calls=3 median_ms={{[0-9.]+}} min_ms={{[0-9.]+}} device=cpu

// Nothing of LLVM or MLIR is needed at run time.
// RUN: ldd %t/libadd.so | FileCheck %s --check-prefix=LDD
// RUN: ldd %kvmerge_obj/bin/kvmerge-aot-run | FileCheck %s --check-prefix=LDD
// LDD-NOT: libMLIR
// LDD-NOT: libLLVM
// LDD-NOT: libmlir
// LDD: libc.so
// LDD-NOT: libMLIR
// LDD-NOT: libLLVM

// Only the C ABI (and the descriptor entry points) is exported: not the
// runtime's mgpu*/memrefCopy, not the lowered functions themselves.
// RUN: llvm-nm -D --defined-only %t/libadd.so | FileCheck %s --check-prefix=SYMS
// SYMS-NOT: mgpu
// SYMS-NOT: memrefCopy
// SYMS-NOT: {{ T (add|pair)$}}
// SYMS-DAG: T _mlir_ciface_add
// SYMS-DAG: T kvmerge_aot_abi_version
// SYMS-DAG: T kvmerge_aot_call
// SYMS-DAG: T kvmerge_aot_function_at
// SYMS-DAG: T kvmerge_aot_initialize
// SYMS-DAG: T kvmerge_aot_kernel_times
// SYMS-DAG: T kvmerge_aot_last_error
// SYMS-DAG: T kvmerge_aot_lookup
// SYMS-DAG: T kvmerge_aot_num_functions
// SYMS-DAG: T kvmerge_aot_target

// The intermediate stages.
// RUN: kvmerge-aot %t/add.mlir --emit=mlir -o - | FileCheck %s --check-prefix=MLIR
// MLIR: llvm.mlir.global external constant @__kvmerge_aot_manifest
// RUN: kvmerge-aot %t/add.mlir --emit=llvm -o - | FileCheck %s --check-prefix=LLVM
// LLVM: target triple = "x86_64
// LLVM: @__kvmerge_aot_entries = {{.*}}constant [2 x ptr]
// RUN: kvmerge-aot %t/add.mlir --emit=obj -o %t/add.o
// RUN: llvm-nm %t/add.o | FileCheck %s --check-prefix=OBJ
// OBJ-DAG: U memrefCopy
// OBJ-DAG: D __kvmerge_aot_entries
// OBJ-DAG: R __kvmerge_aot_manifest

// f32 -> bf16 on a host without a native conversion (x86-64-v3) calls
// __truncsfbf2, which the artifact carries itself (hidden): round to nearest
// even (ties 1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6), overflow to inf, NaN stays NaN;
// the same values as the JIT.
// RUN: kvmerge-aot %t/bf16.mlir --target=cpu -o %t/libbf16.so
// RUN: kvmerge-run %t/helpers.mlir --function=mkbf --output=@%t/bx.npy
// RUN: kvmerge-aot-run %t/libbf16.so --function=tobf16 --input=@%t/bx.npy --output=@%t/by.npy
// RUN: kvmerge-run %t/helpers.mlir --function=idbf --input=@%t/by.npy | FileCheck %s --check-prefix=BF16
// RUN: kvmerge-run %t/bf16.mlir --function=tobf16 --input=@%t/bx.npy | FileCheck %s --check-prefix=BF16
// BF16: result[0]: 6xbf16=1 1.01562 1.00781 inf nan -2.5
// RUN: llvm-nm %t/libbf16.so | FileCheck %s --check-prefix=BFSYM
// BFSYM: t __truncsfbf2

// A baseline x86-64 host CPU.
// RUN: kvmerge-aot %t/add.mlir --mcpu=x86-64 -o %t/libadd-generic.so
// RUN: kvmerge-aot-run %t/libadd-generic.so --list | FileCheck %s --check-prefix=GENERIC
// GENERIC: target: cpu x86-64

//--- add.mlir
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
  %col = tensor.extract_slice %x[0, 1] [3, 1] [1, 1] : tensor<?x3xi32> to tensor<3xi32>
  %d = arith.constant dense<9000000000> : tensor<i64>
  return %col, %d : tensor<3xi32>, tensor<i64>
}

//--- bf16.mlir
func.func @tobf16(%x: tensor<6xf32>) -> tensor<6xbf16> {
  %r = arith.truncf %x : tensor<6xf32> to tensor<6xbf16>
  return %r : tensor<6xbf16>
}

//--- helpers.mlir
// For kvmerge-run: writes the inputs and reads the outputs (.npy).
func.func @id(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}
func.func @mk() -> tensor<3x3xi32> {
  %c = arith.constant dense<[[1, 2, 3], [4, 5, 6], [7, 8, 9]]> : tensor<3x3xi32>
  return %c : tensor<3x3xi32>
}
func.func @id3(%x: tensor<3xi32>) -> tensor<3xi32> {
  return %x : tensor<3xi32>
}
func.func @idi64(%x: tensor<i64>) -> tensor<i64> {
  return %x : tensor<i64>
}
func.func @mkbf() -> tensor<6xf32> {
  %c = arith.constant dense<[1.00390625, 1.01171875, 1.0078125, 3.4e38, 0x7FC00001, -2.5]> : tensor<6xf32>
  return %c : tensor<6xf32>
}
func.func @idbf(%x: tensor<6xbf16>) -> tensor<6xbf16> {
  return %x : tensor<6xbf16>
}
