//===- kvmerge-opt.cpp - mlir-opt with the kvmerge dialects and passes ----===//

#include "kvmerge/InitAllKVMerge.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/thread.h"

/// When a run fails on a file in IREE's own input form (util/hal/flow ops,
/// iree_linalg_ext.attention), says what to do instead: kvmerge reads the
/// frontend's linalg-on-tensors and gives iree-compile upstream dialects.
static void hintAtIREEInput(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    llvm::StringRef arg = argv[i];
    if (arg.starts_with("-"))
      continue;
    auto buffer = llvm::MemoryBuffer::getFile(arg);
    if (!buffer)
      continue;
    llvm::StringRef text = (*buffer)->getBuffer();
    if (text.contains("iree_linalg_ext.") || text.contains("util.func") ||
        text.contains("util.global") || text.contains("hal.buffer_view"))
      llvm::errs()
          << arg
          << ": note: this is IREE's input form (iree-compile "
             "--compile-to=input, or iree-turbine's export), whose dialects "
             "kvmerge does not read; run kvmerge on torch-mlir's "
             "linalg-on-tensors (torch_mlir.fx.export_and_import(..., "
             "output_type=\"linalg-on-tensors\")) and give iree-compile the "
             "output of --kvmerge-export-upstream (docs/iree.md)\n";
  }
}

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

  // On a 1 GiB stack (reserved, used only as deep as needed): MLIR's parser
  // recurses once per operator of an affine expression, and 20 000 of them
  // overflowed the default 8 MiB stack (issue 16).
  mlir::LogicalResult result = mlir::failure();
  llvm::thread worker(std::optional<unsigned>(1u << 30), [&] {
    result = mlir::MlirOptMain(
        argc, argv,
        "kvmerge optimizer driver: mlir-opt plus the kvcache dialect and "
        "kvmerge passes\n",
        registry);
  });
  worker.join();
  if (mlir::failed(result))
    hintAtIREEInput(argc, argv);
  return mlir::asMainReturnCode(result);
}
