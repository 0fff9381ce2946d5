// The C API from C: kvmerge-capi-test registers the kvcache dialect through
// include/kvmerge-c/KVMerge.h, parses this file, verifies it, runs
// kvmerge-decompose-compress through mlirParsePassPipeline, lowers to LLVM
// and translates to LLVM IR, then checks that errors come back as
// diagnostics.
// RUN: kvmerge-capi-test %s | FileCheck %s

// CHECK-LABEL: == dialect handle
// CHECK: namespace: kvcache
// CHECK: loaded: kvcache

// CHECK-LABEL: == parse
// CHECK: func.func @capi
// CHECK: kvcache.compress %{{.*}}, %{{.*}}, %{{.*}} {policy = #kvcache.policy<kvmerger, slots = 10>}

// CHECK-LABEL: == decompose
// CHECK: func.func @capi
// CHECK-NOT: kvcache.compress
// CHECK: kvcache.similarity
// CHECK: kvcache.merge_sets
// CHECK: kvcache.merge
// CHECK-NOT: kvcache.compress

// CHECK-LABEL: == lower to llvm
// CHECK-DAG: define capi
// CHECK-DAG: define _mlir_ciface_capi

// CHECK-LABEL: == errors
// CHECK: diagnostic: 'kvcache.similarity' op
// CHECK: error: 'kvmerge-no-such-pass' does not refer to a registered pass
// CHECK: == done

func.func @capi(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2x10x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<kvmerger, slots = 10>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x10x4xf32>, tensor<2x10x4xf32>, tensor<2x10xi32>, tensor<2x10xi32>, tensor<2x10xf32>, tensor<2xi32>
  return %0#0 : tensor<2x10x4xf32>
}
