// The diagnostics contract of kvmerge-opt: every user-facing failure is a
// message that names the offender (file:line:col for IR, the option for
// command-line values), a non-zero exit code, and no output file (`-o` goes
// through a temporary that is only kept on success).

// RUN: rm -rf %t && split-file %s %t

// Bad pass-option values. The flag form is checked by LLVM's command-line
// parser (one line); the --pass-pipeline form adds MLIR's "failed to add"
// line (upstream MlirOptMain behaviour).
// RUN: not kvmerge-opt %t/ok.mlir --kvmerge-lower-to-llvm="emit-c-interface=maybe" -o %t/out1.mlir 2>&1 | FileCheck %s --check-prefix=BOOL
// BOOL: kvmerge-opt: for the --emit-c-interface option: 'maybe' is invalid value for boolean argument! Try 0 or 1
// RUN: not kvmerge-opt %t/ok.mlir --kvmerge-lower-to-llvm="emit-c-interface=maybe" -o %t/out1.mlir 2>&1 | count 1
// RUN: not test -e %t/out1.mlir
// RUN: not kvmerge-opt %t/ok.mlir --pass-pipeline="builtin.module(kvmerge-lower-to-llvm{emit-c-interface=maybe})" -o %t/out2.mlir 2>&1 | FileCheck %s --check-prefix=PIPE
// PIPE: kvmerge-opt: for the --emit-c-interface option: 'maybe' is invalid value for boolean argument! Try 0 or 1
// PIPE: error: failed to add `kvmerge-lower-to-llvm` with options `emit-c-interface=maybe`
// RUN: not test -e %t/out2.mlir
// Unknown options of our passes and pipeline.
// RUN: not kvmerge-opt %t/ok.mlir --kvmerge-lower-to-llvm="no-such-option=1" -o %t/out3.mlir 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: no such option no-such-option
// RUN: not kvmerge-opt %t/ok.mlir --kvmerge-decompose-compress="foo=1" -o %t/out3.mlir 2>&1 | FileCheck %s --check-prefix=UNKNOWN2
// RUN: not kvmerge-opt %t/ok.mlir --convert-kvcache-to-loops="foo=1" -o %t/out3.mlir 2>&1 | FileCheck %s --check-prefix=UNKNOWN2
// UNKNOWN2: error: <Pass-Options-Parser>: no such option foo
// RUN: not test -e %t/out3.mlir

// Unsupported element type: kvcache ops on i32 tensors are rejected by the
// verifier at the op's location, before any pass runs.
// RUN: not kvmerge-opt %t/i32.mlir --kvmerge-lower-to-llvm -o %t/out4.mlir 2>&1 | FileCheck %s --check-prefix=DTYPE
// DTYPE: i32.mlir:2:10: error: 'kvcache.compress' op operand #0 must be ranked tensor of 16-bit float or bfloat16 type or 32-bit float or 64-bit float values, but got 'tensor<2x16x8xi32>'
// DTYPE-NOT: error:
// RUN: not test -e %t/out4.mlir

// A pass that fails half-way (an op the CPU pipeline cannot lower) leaves no
// partially lowered output.
// RUN: not kvmerge-opt %t/unlowerable.mlir --kvmerge-lower-to-llvm -o %t/out5.mlir 2>&1 | FileCheck %s --check-prefix=LOWER
// LOWER: unlowerable.mlir:2:8: error: op was not bufferized
// RUN: not test -e %t/out5.mlir

// ...and the same command line writes the file when the input is valid.
// RUN: kvmerge-opt %t/ok.mlir --kvmerge-lower-to-llvm="emit-c-interface=1" -o %t/out6.mlir
// RUN: test -s %t/out6.mlir

//--- ok.mlir
func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
  return %a : tensor<4xf32>
}
//--- i32.mlir
func.func @f(%k: tensor<2x16x8xi32>, %v: tensor<2x16x8xi32>, %a: tensor<2x16xf32>) -> tensor<2x8x8xi32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 8>} : tensor<2x16x8xi32>, tensor<2x16x8xi32>, tensor<2x16xf32> -> tensor<2x8x8xi32>, tensor<2x8x8xi32>, tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2xi32>
  return %0#0 : tensor<2x8x8xi32>
}
//--- unlowerable.mlir
func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
  %0 = tosa.add %a, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}
