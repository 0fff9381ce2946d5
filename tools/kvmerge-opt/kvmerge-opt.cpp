//===- kvmerge-opt.cpp - mlir-opt with the kvmerge dialects and passes ----===//

#include "kvmerge/InitAllKVMerge.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/thread.h"

/// Whether `text` is in IREE's own input form (util/hal ops,
/// iree_linalg_ext.attention), which kvmerge does not read.
static bool isIREEInput(llvm::StringRef text) {
  return text.contains("iree_linalg_ext.") || text.contains("util.func") ||
         text.contains("util.global") || text.contains("hal.buffer_view");
}

/// mlir-opt's driver, reading the input once so that a failure on IREE's
/// input form (a file or stdin) can say what to do instead: kvmerge reads the
/// frontend's linalg-on-tensors and gives iree-compile upstream dialects.
static mlir::LogicalResult runDriver(int argc, char **argv,
                                     mlir::DialectRegistry &registry) {
  auto [inputFilename, outputFilename] = mlir::registerAndParseCLIOptions(
      argc, argv,
      "kvmerge optimizer driver: mlir-opt plus the kvcache dialect and "
      "kvmerge passes\n",
      registry);
  mlir::MlirOptMainConfig config =
      mlir::MlirOptMainConfig::createFromCLOptions();
  if (config.shouldShowDialects() || config.shouldListPasses())
    return mlir::MlirOptMain(argc, argv, inputFilename, outputFilename,
                             registry);
  std::string message;
  std::unique_ptr<llvm::MemoryBuffer> input =
      mlir::openInputFile(inputFilename, &message);
  if (!input) {
    llvm::errs() << message << "\n";
    return mlir::failure();
  }
  bool iree = isIREEInput(input->getBuffer());
  std::unique_ptr<llvm::ToolOutputFile> output =
      mlir::openOutputFile(outputFilename, &message);
  if (!output) {
    llvm::errs() << message << "\n";
    return mlir::failure();
  }
  if (mlir::succeeded(mlir::MlirOptMain(output->os(), std::move(input),
                                        registry, config))) {
    output->keep();
    return mlir::success();
  }
  if (iree)
    llvm::errs()
        << (inputFilename == "-" ? std::string("<stdin>") : inputFilename)
        << ": note: this is IREE's input form (iree-compile "
           "--compile-to=input, or iree-turbine's export), whose dialects "
           "kvmerge does not read; run kvmerge on torch-mlir's "
           "linalg-on-tensors (torch_mlir.fx.export_and_import(..., "
           "output_type=\"linalg-on-tensors\")) and give iree-compile the "
           "output of --kvmerge-export-upstream (docs/iree.md)\n";
  return mlir::failure();
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
  llvm::thread worker(std::optional<unsigned>(1u << 30),
                      [&] { result = runDriver(argc, argv, registry); });
  worker.join();
  return mlir::asMainReturnCode(result);
}
