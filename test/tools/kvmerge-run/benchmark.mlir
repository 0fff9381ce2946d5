// --benchmark-repetitions=N: one warm-up run, N timed runs, then the table
// (bytes = every input and output buffer; GB/s = bytes / median), then the
// results as usual.

// RUN: rm -rf %t && mkdir -p %t
// RUN: kvmerge-run %s --input=256x256xf32=1 --input=256x256xf32=2 --benchmark-repetitions=5 --output=@%t/sum.npy | FileCheck %s
// CHECK: benchmark: add, 5 repetitions after 1 warm-up run
// CHECK-NEXT: median_ms: {{[0-9]+\.[0-9]+}}
// CHECK-NEXT: min_ms: {{[0-9]+\.[0-9]+}}
// CHECK-NEXT: bytes: 786432
// CHECK-NEXT: GB/s: {{[0-9]+\.[0-9]+|inf}}
// CHECK-NOT: result[0]
// RUN: kvmerge-run %s --input=@%t/sum.npy --input=256x256xf32=-3 --print-max-elements=4 | FileCheck %s --check-prefix=SUM
// SUM: result[0]: 256x256xf32=[0 0 0 0 ...{{$}}

// The default function is the module's only public one.
func.func @add(%a: tensor<256x256xf32>, %b: tensor<256x256xf32>) -> tensor<256x256xf32> {
  %e = tensor.empty() : tensor<256x256xf32>
  %0 = linalg.add ins(%a, %b : tensor<256x256xf32>, tensor<256x256xf32>)
                  outs(%e : tensor<256x256xf32>) -> tensor<256x256xf32>
  return %0 : tensor<256x256xf32>
}
