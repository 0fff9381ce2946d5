// Without a CUDA driver (this is checked where no GPU is present),
// --device=cuda fails with one clear message and writes nothing. The CPU
// path of the same build is unaffected.
// UNSUPPORTED: cuda-device
// RUN: rm -rf %t && mkdir -p %t
// RUN: env LD_LIBRARY_PATH=%t not kvmerge-run %s --function=f --input=2xf32=1 --device=cuda --output=@%t/out.npy 2>&1 | FileCheck %s
// CHECK: kvmerge-run: error: device cuda is not available: {{cannot load the CUDA driver \(libcuda.so.1\)|CUDA driver initialization failed|no CUDA device found}}
// CHECK-NOT: error
// RUN: not test -e %t/out.npy
// RUN: kvmerge-run %s --function=f --input=2xf32=1 --device=cpu | FileCheck %s --check-prefix=CPU
// CPU: result[0]: 2xf32=2 2
func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  %y = arith.addf %x, %x : tensor<2xf32>
  return %y : tensor<2xf32>
}
