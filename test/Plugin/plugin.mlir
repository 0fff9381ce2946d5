// Debian's stock mlir-opt learns the kvcache dialect and the kvmerge passes
// from the plugin library.
// RUN: %mlir_opt %s --load-dialect-plugin=%kvmerge_libs/KVMergePlugin%shlibext --load-pass-plugin=%kvmerge_libs/KVMergePlugin%shlibext --pass-pipeline="builtin.module(kvmerge-decompose-compress)" | FileCheck %s
// RUN: %mlir_opt --load-pass-plugin=%kvmerge_libs/KVMergePlugin%shlibext --help | FileCheck %s --check-prefix=HELP

// HELP: --kvmerge-decompose-compress

// CHECK-LABEL: func @plugin
// CHECK: kvcache.select_sets %{{.*}} sink(4) recent(6) middle(0)
// CHECK: kvcache.merge
func.func @plugin(%k: tensor<2x16x4xf32>, %v: tensor<2x16x4xf32>, %a: tensor<2x16xf32>) -> tensor<2x10x4xf32> {
  %0:6 = kvcache.compress %k, %v, %a {policy = #kvcache.policy<streaming, slots = 10>}
      : tensor<2x16x4xf32>, tensor<2x16x4xf32>, tensor<2x16xf32>
      -> tensor<2x10x4xf32>, tensor<2x10x4xf32>, tensor<2x10xi32>, tensor<2x10xi32>, tensor<2x10xf32>, tensor<2xi32>
  return %0#0 : tensor<2x10x4xf32>
}
