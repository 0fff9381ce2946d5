// Compiled kvcache.compress on a cache small enough to work out by hand,
// through the fused per-head region (default) and the unfused ops.
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm="emit-c-interface=false" \
// RUN: | %mlir_runner -e main -entry-point-result=void -O3 \
// RUN:     -shared-libs=%c_runner_utils_lib,%runner_utils_lib \
// RUN: | FileCheck %s
// RUN: kvmerge-opt %s --kvmerge-lower-to-llvm="emit-c-interface=false fuse-merge=false" \
// RUN: | %mlir_runner -e main -entry-point-result=void -O3 \
// RUN:     -shared-libs=%c_runner_utils_lib,%runner_utils_lib \
// RUN: | FileCheck %s
//
// One head, 8 tokens, D = 2, sink 1, recent 1, budget 5 -> 3 middle slots.
//   keys   (1,0) (1,0) (0,1) (0,1) (1,1) (1,1) (-1,0) (-1,0)
// Middle tokens 1..6; adjacent cosines of their links:
//   1-2: 0   2-3: 1   3-4: 0.7071   4-5: 1   5-6: -0.7071
// The 2 weakest links (5-6, then 1-2) are cut: sets {1} {2,3,4,5} {6}.
// Scores 1 except token 3 (5): pivot of {2..5} is 3, key (0,1).
// Squared distances to the pivot 0,0,1,1; sigma^2 (auto) = mean over the
// non-pivots = 2/3; g = exp(-d / (4/3)) = 1, 1, e^-0.75, e^-0.75;
// weights 0.339590, 0.339590, 0.160410, 0.160410.
//   K' = (2 * 0.160410, 1) = (0.320821, 1)
//   V' (values (t, -t)) = 5 * 0.339590 + 9 * 0.160410 = 3.141640
// Slots: {0} {1} {2..5} {6} {7}; positions 0 1 3 6 7; counts 1 1 4 1 1;
// scores 1 1 8 1 1; length 5.

func.func private @printMemrefF32(memref<*xf32>)
func.func private @printMemrefI32(memref<*xi32>)

func.func @main() {
  %k = arith.constant dense<[[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0],
                              [1.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [-1.0, 0.0]]]> : tensor<1x8x2xf32>
  %v = arith.constant dense<[[[0.0, 0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0],
                              [4.0, -4.0], [5.0, -5.0], [6.0, -6.0], [7.0, -7.0]]]> : tensor<1x8x2xf32>
  %a = arith.constant dense<[[1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0]]> : tensor<1x8xf32>
  %r:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 5, sink = 1, recent = 1, heavy = 0, sigma = auto>}
      : tensor<1x8x2xf32>, tensor<1x8x2xf32>, tensor<1x8xf32>
      -> tensor<1x5x2xf32>, tensor<1x5x2xf32>, tensor<1x5xi32>, tensor<1x5xi32>, tensor<1x5xf32>, tensor<1xi32>
  %k2 = bufferization.to_buffer %r#0 : tensor<1x5x2xf32> to memref<1x5x2xf32>
  %v2 = bufferization.to_buffer %r#1 : tensor<1x5x2xf32> to memref<1x5x2xf32>
  %p2 = bufferization.to_buffer %r#2 : tensor<1x5xi32> to memref<1x5xi32>
  %c2 = bufferization.to_buffer %r#3 : tensor<1x5xi32> to memref<1x5xi32>
  %s2 = bufferization.to_buffer %r#4 : tensor<1x5xf32> to memref<1x5xf32>
  %l2 = bufferization.to_buffer %r#5 : tensor<1xi32> to memref<1xi32>
  %uk = memref.cast %k2 : memref<1x5x2xf32> to memref<*xf32>
  %uv = memref.cast %v2 : memref<1x5x2xf32> to memref<*xf32>
  %up = memref.cast %p2 : memref<1x5xi32> to memref<*xi32>
  %uc = memref.cast %c2 : memref<1x5xi32> to memref<*xi32>
  %us = memref.cast %s2 : memref<1x5xf32> to memref<*xf32>
  %ul = memref.cast %l2 : memref<1xi32> to memref<*xi32>
  // CHECK: [1,{{ +}}0],
  // CHECK-NEXT: [1,{{ +}}0],
  // CHECK-NEXT: [0.32082{{[0-9]*}},{{ +}}1],
  // CHECK-NEXT: [-1,{{ +}}0],
  // CHECK-NEXT: [-1,{{ +}}0]
  call @printMemrefF32(%uk) : (memref<*xf32>) -> ()
  // CHECK: [0,{{ +}}0],
  // CHECK-NEXT: [1,{{ +}}-1],
  // CHECK-NEXT: [3.1416{{[0-9]*}},{{ +}}-3.1416{{[0-9]*}}],
  // CHECK-NEXT: [6,{{ +}}-6],
  // CHECK-NEXT: [7,{{ +}}-7]
  call @printMemrefF32(%uv) : (memref<*xf32>) -> ()
  // CHECK: [0,{{ +}}1,{{ +}}3,{{ +}}6,{{ +}}7]
  call @printMemrefI32(%up) : (memref<*xi32>) -> ()
  // CHECK: [1,{{ +}}1,{{ +}}4,{{ +}}1,{{ +}}1]
  call @printMemrefI32(%uc) : (memref<*xi32>) -> ()
  // CHECK: [1,{{ +}}1,{{ +}}8,{{ +}}1,{{ +}}1]
  call @printMemrefF32(%us) : (memref<*xf32>) -> ()
  // CHECK: [5]
  call @printMemrefI32(%ul) : (memref<*xi32>) -> ()
  return
}
