// kvmerge-aot --target=cuda: the kernels embedded in the shared object (a
// fatbin: cubin for the chip plus its PTX), the host code calling the
// runtime's own dlopen'ed CUDA driver layer. Nothing links against CUDA,
// LLVM or MLIR; without a driver every call fails with one clear message.
// REQUIRES: ptxas
// UNSUPPORTED: cuda-device
// RUN: rm -rf %t && mkdir -p %t
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cuda --chip=sm_90a -o %t/libc.so
// RUN: kvmerge-aot-run %t/libc.so --list | FileCheck %s --check-prefix=LIST
// LIST: target: cuda sm_90a fatbin
// LIST-NEXT: compress_layer(tensor<3x1024x64xf16>, tensor<3x1024x64xf16>, tensor<3x1024xf32>) -> (tensor<3x512x64xf16>, tensor<3x512x64xf16>, tensor<3x512xi32>, tensor<3x512xi32>, tensor<3x512xf32>, tensor<3xi32>)
// LIST-NEXT: decode_step(

// RUN: ldd %t/libc.so | FileCheck %s --check-prefix=LDD
// LDD-NOT: libMLIR
// LDD-NOT: libLLVM
// LDD-NOT: libcuda
// LDD: libc.so
// LDD-NOT: libMLIR
// LDD-NOT: libLLVM
// LDD-NOT: libcuda
// RUN: llvm-nm -D --defined-only %t/libc.so | FileCheck %s --check-prefix=SYMS
// SYMS-NOT: mgpu
// SYMS: kvmerge_aot_call
// SYMS-NOT: mgpu

// The host code loads one module per kernel through mgpuModuleLoad (cubin/
// fatbin) and launches through mgpuLaunchKernel.
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cuda --emit=llvm -o - | FileCheck %s --check-prefix=LLVM
// LLVM-DAG: @kvmerge_similarity_{{[0-9]+}}_binary = internal constant
// LLVM-DAG: @llvm.global_ctors
// LLVM-DAG: declare ptr @mgpuModuleLoad(ptr, i64)
// LLVM-DAG: declare void @mgpuLaunchKernel(

// Loading needs no driver (the module loads are deferred errors); calling
// fails with the driver's message and writes nothing.
// RUN: kvmerge-run %s --function=mk --output=@%t/k.npy --output=@%t/a.npy
// RUN: not kvmerge-aot-run %t/libc.so --function=compress_layer --input=@%t/k.npy --input=@%t/k.npy --input=@%t/a.npy --output=@%t/out.npy 2>&1 | FileCheck %s --check-prefix=NODRIVER
// NODRIVER: kvmerge-aot-run: error: {{cannot load the CUDA driver \(libcuda.so.1\)|CUDA driver initialization failed|no CUDA device found}}
// NODRIVER-SAME: this artifact (target cuda sm_90a fatbin) needs an NVIDIA GPU with its driver
// RUN: not test -e %t/out.npy
// Bad arguments are reported before the device is needed.
// RUN: not kvmerge-aot-run %t/libc.so --function=compress_layer --input=@%t/a.npy --input=@%t/k.npy --input=@%t/a.npy 2>&1 | FileCheck %s --check-prefix=BADARG
// BADARG: kvmerge-aot-run: error: input 0 of 'compress_layer' has dtype f32, expected f16 (tensor<3x1024x64xf16>)

// The other embeddings: cubin only, PTX only (JIT-compiled by the driver).
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cuda --chip=sm_80 --gpu-format=bin -o %t/libbin.so
// RUN: kvmerge-aot-run %t/libbin.so --list | FileCheck %s --check-prefix=BIN
// BIN: target: cuda sm_80 bin
// RUN: kvmerge-aot %kvmerge_src/examples/compress-smollm2.mlir --target=cuda --gpu-format=isa -o %t/libptx.so
// RUN: kvmerge-aot-run %t/libptx.so --list | FileCheck %s --check-prefix=ISA
// ISA: target: cuda sm_90a isa

func.func @mk() -> (tensor<3x1024x64xf16>, tensor<3x1024xf32>) {
  %k = arith.constant dense<1.0> : tensor<3x1024x64xf16>
  %a = arith.constant dense<0.5> : tensor<3x1024xf32>
  return %k, %a : tensor<3x1024x64xf16>, tensor<3x1024xf32>
}
