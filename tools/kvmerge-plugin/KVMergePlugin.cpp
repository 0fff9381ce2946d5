//===- KVMergePlugin.cpp - kvmerge as an mlir-opt plugin ------------------===//
//
// Exposes the kvcache dialect (dialect plugin) and the kvmerge passes (pass
// plugin) to any mlir-opt built against the same libMLIR.so.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/InitAllKVMerge.h"

#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Compiler.h"

extern "C" LLVM_ATTRIBUTE_WEAK ::mlir::DialectPluginLibraryInfo
mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "KVMergeDialects", LLVM_VERSION_STRING,
          [](mlir::DialectRegistry *registry) {
            kvmerge::registerAllDialects(*registry);
          }};
}

extern "C" LLVM_ATTRIBUTE_WEAK ::mlir::PassPluginLibraryInfo
mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "KVMergePasses", LLVM_VERSION_STRING,
          []() { kvmerge::registerAllPasses(); }};
}
