//===- fuzz_ir.cpp - libFuzzer target: kvcache IR through the passes -------===//
//
// kvmerge-fuzz-ir: parses arbitrary textual IR (func/arith/tensor + kvcache),
// verifies it and, if it verifies, runs
//   kvmerge-decompose-compress, convert-kvcache-to-loops, canonicalize
// with the verifier on after each pass. Diagnostics are expected and
// swallowed; a crash, sanitizer report, or a pass that succeeds but leaves
// IR that does not verify is a bug (the latter traps).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/InitAllKVMerge.h"
#include "kvmerge/Runtime/Runner.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace {

struct State {
  mlir::DialectRegistry registry;
  std::unique_ptr<mlir::MLIRContext> context;
  unsigned uses = 0;

  State() {
    registry.insert<mlir::func::FuncDialect, mlir::arith::ArithDialect,
                    mlir::tensor::TensorDialect, mlir::scf::SCFDialect,
                    mlir::memref::MemRefDialect, mlir::math::MathDialect,
                    mlir::bufferization::BufferizationDialect>();
    kvmerge::registerAllDialects(registry);
    reset();
  }

  // Types and attributes are uniqued in the context for its lifetime: start
  // a fresh one now and then so memory stays bounded over a long run.
  void reset() {
    context = std::make_unique<mlir::MLIRContext>(
        registry, mlir::MLIRContext::Threading::DISABLED);
    context->loadAllAvailableDialects();
    // MLIR diagnostics are the expected outcome for most inputs.
    context->getDiagEngine().registerHandler(
        [](mlir::Diagnostic &) { return mlir::success(); });
    uses = 0;
  }
};

State &state() {
  static State *s = [] {
    kvmerge::registerAllPasses();
    mlir::registerCanonicalizerPass();
    return new State();
  }();
  return *s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  State &s = state();
  if (++s.uses > 2000)
    s.reset();
  mlir::MLIRContext *context = s.context.get();

  // The MLIR lexer relies on a NUL after the buffer (as every file and
  // MemoryBuffer has); libFuzzer's buffer has none, so copy it.
  std::string text(reinterpret_cast<const char *>(data), size);
  // MLIR's recursive-descent parser overflows the stack on absurd nesting
  // (crash-927fe8…); our entry points refuse such input first, so does this.
  if (llvm::Error err = kvmerge::runtime::checkNestingDepth(text)) {
    llvm::consumeError(std::move(err));
    return 0;
  }
  mlir::ParserConfig config(context, /*verifyAfterParse=*/true);
  // Like our tools, parse on a large stack (deep affine expressions).
  mlir::OwningOpRef<mlir::ModuleOp> module;
  kvmerge::runtime::runOnLargeStack([&] {
    module = mlir::parseSourceString<mlir::ModuleOp>(text, config, "fuzz-input");
  });
  if (!module)
    return 0;

  mlir::PassManager pm(context, mlir::ModuleOp::getOperationName());
  pm.enableVerifier(false); // verified by hand below, to tell bugs apart
  std::string pipelineError;
  llvm::raw_string_ostream errs(pipelineError);
  if (mlir::failed(mlir::parsePassPipeline(
          "builtin.module(kvmerge-decompose-compress, "
          "convert-kvcache-to-loops, canonicalize)",
          pm, errs))) {
    llvm::errs() << "kvmerge-fuzz-ir: bad pipeline: " << pipelineError << "\n";
    __builtin_trap();
  }
  if (mlir::failed(pm.run(*module)))
    return 0; // a pass rejected the input with a diagnostic: fine
  if (mlir::failed(mlir::verify(*module))) {
    llvm::errs() << "kvmerge-fuzz-ir: passes succeeded but left invalid IR\n";
    __builtin_trap();
  }
  return 0;
}
