// Every bad flag or input is one message and exit code 1, and no output.
// RUN: rm -rf %t && split-file %s %t
// RUN: not kvmerge-aot %t/good.mlir --target=rocm -o %t/x.so 2>&1 | FileCheck %s --check-prefix=TARGET
// TARGET: kvmerge-aot: error: unknown target 'rocm' (--target): expected cpu or cuda
// RUN: not kvmerge-aot %t/good.mlir --emit=asm -o %t/x.so 2>&1 | FileCheck %s --check-prefix=EMIT
// EMIT: kvmerge-aot: error: unknown output kind 'asm' (--emit): expected shared, obj, llvm or mlir
// RUN: not kvmerge-aot %t/good.mlir --target=cuda --chip=sm_xx -o %t/x.so 2>&1 | FileCheck %s --check-prefix=CHIP
// RUN: not kvmerge-aot %t/good.mlir --target=cuda --chip=sm_999 -o %t/x.so 2>&1 | FileCheck %s --check-prefix=CHIP
// RUN: not kvmerge-aot %t/good.mlir --target=cuda --chip=gfx90a -o %t/x.so 2>&1 | FileCheck %s --check-prefix=CHIP
// CHIP: kvmerge-aot: error: unknown NVIDIA chip '{{.*}}' (--chip): expected an SM that LLVM's NVPTX backend supports, e.g. sm_80, sm_90, sm_90a
// RUN: not kvmerge-aot %t/good.mlir --target=cuda --gpu-format=elf -o %t/x.so 2>&1 | FileCheck %s --check-prefix=FORMAT
// FORMAT: kvmerge-aot: error: unknown GPU binary format 'elf' (--gpu-format): expected isa, bin or fatbin
// RUN: not kvmerge-aot %t/good.mlir --mcpu=pentium9 -o %t/x.so 2>&1 | FileCheck %s --check-prefix=MCPU
// MCPU: kvmerge-aot: error: unknown host CPU 'pentium9' (--mcpu): e.g. x86-64, x86-64-v3, native
// RUN: not kvmerge-aot %t/good.mlir --opt-level=7 -o %t/x.so 2>&1 | FileCheck %s --check-prefix=OPT
// OPT: kvmerge-aot: error: optimization level 7 (--opt-level) is not 0-3
// RUN: not kvmerge-aot %t/good.mlir --emit=obj -o - 2>&1 | FileCheck %s --check-prefix=STDOUT
// STDOUT: kvmerge-aot: error: --emit=obj needs an output file (-o)
// RUN: not kvmerge-aot %t/good.mlir --pipeline-options=bogus=1 -o %t/x.so 2>&1 | FileCheck %s --check-prefix=PIPE
// PIPE: kvmerge-aot: error: invalid --pipeline-options 'bogus=1' for --kvmerge-lower-to-llvm
// RUN: not kvmerge-aot %t/good.mlir --runtime-lib=%t/none.a -o %t/x.so 2>&1 | FileCheck %s --check-prefix=RUNTIME
// RUNTIME: kvmerge-aot: error: the artifact runtime '{{.*}}none.a' does not exist (build the target KVMergeAOTRuntime, or pass --runtime-lib)
// RUN: not kvmerge-aot %t/good.mlir --cxx=no-such-compiler -o %t/x.so 2>&1 | FileCheck %s --check-prefix=CXX
// CXX: kvmerge-aot: error: cannot find the C++ compiler driver 'no-such-compiler' that links the artifact (pass --cxx=PATH, or --emit=obj)
// A link failure shows the command and the linker's words.
// RUN: not kvmerge-aot %t/good.mlir --link-arg=-lno-such-library -o %t/x.so 2>&1 | FileCheck %s --check-prefix=LINK
// LINK: kvmerge-aot: error: linking the artifact failed:
// LINK: no-such-library
// RUN: not kvmerge-aot %t/missing.mlir -o %t/x.so 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: kvmerge-aot: error: cannot read '{{.*}}missing.mlir': No such file or directory
// RUN: not test -e %t/x.so
// RUN: not test -e %t/x.so.tmp-link

// Diagnostics of the ABI check and the lowering come with file:line:col.
// RUN: not kvmerge-aot %t/dyn.mlir -o %t/x.so 2>&1 | FileCheck %s --check-prefix=ABI
// ABI: kvmerge-aot: error: failed to compile '{{.*}}dyn.mlir' for cpu x86-64-v3:
// ABI-NEXT: {{.*}}dyn.mlir:1:1: error: result 0 of 'dyn' has type 'tensor<?xf32>': results must have static shapes
// RUN: not kvmerge-aot %t/bad.mlir -o %t/x.so 2>&1 | FileCheck %s --check-prefix=PARSE
// PARSE: kvmerge-aot: error: failed to parse '{{.*}}bad.mlir':
// PARSE-NEXT: {{.*}}bad.mlir:2:14: error: expected non-function type
// RUN: not test -e %t/x.so

//--- good.mlir
func.func @id(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

//--- bad.mlir
// A syntax error.
func.func @f(

//--- dyn.mlir
func.func @dyn(%x: tensor<?xf32>) -> tensor<?xf32> {
  return %x : tensor<?xf32>
}
