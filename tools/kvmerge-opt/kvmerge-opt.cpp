//===- kvmerge-opt.cpp - mlir-opt with the kvmerge dialects and passes ----===//

#include "kvmerge/InitAllKVMerge.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  kvmerge::registerAllPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  kvmerge::registerAllDialects(registry);
  // gpu-module-to-binary (--kvmerge-lower-to-nvvm) translates gpu.module
  // to LLVM IR.
  mlir::registerAllGPUToLLVMIRTranslations(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "kvmerge optimizer driver: mlir-opt plus the kvcache "
                  "dialect and kvmerge passes\n",
      registry));
}
