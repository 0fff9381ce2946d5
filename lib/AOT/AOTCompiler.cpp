//===- AOTCompiler.cpp - build ahead-of-time artifacts --------------------===//
//
// See include/kvmerge/AOT/AOTCompiler.h and docs/aot.md.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/AOT/AOTCompiler.h"

#include "kvmerge/AOT/Passes.h"
#include "kvmerge/InitAllKVMerge.h"
#include "kvmerge/Pipelines/Pipelines.h"
#include "kvmerge/Runtime/Runner.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/TargetParser/Triple.h"

#include <mutex>
#include <optional>

using namespace llvm;

#ifndef KVMERGE_AOT_DEFAULT_CXX
#define KVMERGE_AOT_DEFAULT_CXX "clang++"
#endif
#ifndef KVMERGE_AOT_DEFAULT_LINKER
#define KVMERGE_AOT_DEFAULT_LINKER ""
#endif

namespace {

void initializeTargets() {
  static std::once_flag once;
  std::call_once(once, [] {
    InitializeAllTargetInfos();
    InitializeAllTargets();
    InitializeAllTargetMCs();
    InitializeAllAsmPrinters();
  });
}

/// Whether the NVPTX backend knows `chip` (sm_80, sm_90a, ...): an unknown
/// chip would otherwise abort inside LLVM's instruction selection.
Error checkChip(StringRef chip) {
  std::string error;
  Triple triple("nvptx64-nvidia-cuda");
  const Target *target = TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return createStringError("this LLVM has no NVPTX backend: " + error);
  std::unique_ptr<MCSubtargetInfo> info(
      target->createMCSubtargetInfo(triple, "", ""));
  if (!chip.starts_with("sm_") || !info || !info->isCPUStringValid(chip))
    return createStringError("unknown NVIDIA chip '" + chip +
                             "' (--chip): expected an SM that LLVM's NVPTX "
                             "backend supports, e.g. sm_80, sm_90, sm_90a");
  return Error::success();
}

/// Writes `text` to `path` ("-" = stdout) atomically.
Error writeOutput(StringRef path, function_ref<void(raw_ostream &)> write) {
  std::error_code ec;
  ToolOutputFile file(path, ec, sys::fs::OF_None);
  if (ec)
    return createStringError("cannot open '" + path + "': " + ec.message());
  write(file.os());
  file.os().flush();
  if (file.os().has_error())
    return createStringError("cannot write '" + path +
                             "': " + file.os().error().message());
  file.keep();
  return Error::success();
}

/// A temporary file that is removed when this goes out of scope.
struct TempPath {
  SmallString<128> path;
  ~TempPath() {
    if (!path.empty())
      sys::fs::remove(path);
  }
  Error create(StringRef prefix, StringRef suffix) {
    if (std::error_code ec =
            sys::fs::createTemporaryFile(prefix, suffix, path))
      return createStringError("cannot create a temporary file: " +
                               ec.message());
    return Error::success();
  }
};

std::string defaultRuntimeLib(const char *argv0) {
  static int anchor;
  std::string exe = sys::fs::getMainExecutable(argv0, &anchor);
  SmallString<256> path(sys::path::parent_path(sys::path::parent_path(exe)));
  sys::path::append(path, "lib", "libKVMergeAOTRuntime.a");
  return path.str().str();
}

/// Links `object` and the runtime into the shared object `output`.
Error link(StringRef object, StringRef output,
           const kvmerge::aot::AOTOptions &options, const char *argv0) {
  std::string runtime = options.runtimeLib.empty() ? defaultRuntimeLib(argv0)
                                                   : options.runtimeLib;
  if (!sys::fs::exists(runtime))
    return createStringError(
        "the artifact runtime '" + runtime +
        "' does not exist (build the target KVMergeAOTRuntime, or pass "
        "--runtime-lib)");
  std::string cxx = options.cxx.empty() ? KVMERGE_AOT_DEFAULT_CXX : options.cxx;
  ErrorOr<std::string> driver = sys::path::is_absolute(cxx)
                                    ? ErrorOr<std::string>(cxx)
                                    : sys::findProgramByName(cxx);
  if (!driver || !sys::fs::can_execute(*driver))
    return createStringError(
        "cannot find the C++ compiler driver '" + cxx +
        "' that links the artifact (pass --cxx=PATH, or --emit=obj)");

  TempPath script, log, partial;
  if (Error err = script.create("kvmerge-aot", "map"))
    return err;
  if (Error err = log.create("kvmerge-aot", "log"))
    return err;
  {
    std::error_code ec;
    raw_fd_ostream os(script.path, ec);
    if (ec)
      return createStringError("cannot write the version script: " +
                               ec.message());
    // Only the C ABI (and the raw descriptor entry points) is exported;
    // the runtime's mgpu*/memrefCopy and everything else stay local.
    os << "{\n  global:\n    kvmerge_aot_*;\n    _mlir_ciface_*;\n"
          "  local:\n    *;\n};\n";
  }
  // Written next to the output, renamed over it only when the link worked.
  partial.path = (output + ".tmp-link").str();
  std::string soname = sys::path::filename(output).str();
  std::vector<std::string> args = {*driver, "-shared", "-o",
                                   partial.path.str().str()};
  if (StringRef linker = KVMERGE_AOT_DEFAULT_LINKER; !linker.empty())
    args.push_back(("-fuse-ld=" + linker).str());
  args.insert(args.end(),
              {object.str(),
               // The C ABI is referenced by nobody in the object: take all.
               "-Wl,--whole-archive", runtime, "-Wl,--no-whole-archive",
               "-Wl,-soname," + soname,
               ("-Wl,--version-script=" + script.path).str(), "-Wl,-z,defs",
               "-Wl,-z,noexecstack", "-ldl", "-lm", "-lpthread"});
  args.insert(args.end(), options.linkArgs.begin(), options.linkArgs.end());
  std::vector<StringRef> argRefs(args.begin(), args.end());
  std::optional<StringRef> redirects[] = {std::nullopt, log.path.str(),
                                          log.path.str()};
  std::string message;
  int rc = sys::ExecuteAndWait(*driver, argRefs, std::nullopt, redirects,
                               /*SecondsToWait=*/0, /*MemoryLimit=*/0,
                               &message);
  if (rc != 0) {
    std::string command;
    for (const std::string &arg : args)
      command += (command.empty() ? "" : " ") + arg;
    std::string output;
    if (auto buffer = MemoryBuffer::getFile(log.path))
      output = (*buffer)->getBuffer().rtrim().str();
    return createStringError(
        "linking the artifact failed" +
        (message.empty() ? "" : " (" + message + ")") + ":\n  " + command +
        (output.empty() ? "" : "\n" + output));
  }
  if (std::error_code ec = sys::fs::rename(partial.path, output))
    return createStringError("cannot write '" + output + "': " + ec.message());
  partial.path.clear();
  return Error::success();
}

} // namespace

Error kvmerge::aot::compile(StringRef inputPath, StringRef outputPath,
                            const AOTOptions &options, const char *argv0) {
  if (options.target != "cpu" && options.target != "cuda")
    return createStringError("unknown target '" + options.target +
                             "' (--target): expected cpu or cuda");
  if (!is_contained({"shared", "obj", "llvm", "mlir"}, options.emit))
    return createStringError("unknown output kind '" + options.emit +
                             "' (--emit): expected shared, obj, llvm or mlir");
  if (options.optLevel > 3)
    return createStringError("optimization level " + Twine(options.optLevel) +
                             " (--opt-level) is not 0-3");
  if (outputPath == "-" && (options.emit == "shared" || options.emit == "obj"))
    return createStringError("--emit=" + options.emit +
                             " needs an output file (-o)");
  initializeTargets();
  // The host target (checked before any work).
  Triple triple(sys::getDefaultTargetTriple());
  std::string error;
  const Target *hostTarget = TargetRegistry::lookupTarget(triple, error);
  if (!hostTarget)
    return createStringError("no LLVM target for '" + triple.str() +
                             "': " + error);
  std::string cpu = options.mcpu == "native" ? sys::getHostCPUName().str()
                                             : options.mcpu;
  std::string features = options.mattr;
  if (options.mcpu == "native" && features.empty()) {
    SubtargetFeatures hostFeatures;
    for (const auto &feature : sys::getHostCPUFeatures())
      hostFeatures.AddFeature(feature.getKey(), feature.getValue());
    features = hostFeatures.getString();
  }
  {
    std::unique_ptr<MCSubtargetInfo> info(
        hostTarget->createMCSubtargetInfo(triple, "", ""));
    if (info && !info->isCPUStringValid(cpu))
      return createStringError("unknown host CPU '" + cpu +
                               "' (--mcpu): e.g. x86-64, x86-64-v3, native");
  }
  if (options.target == "cuda") {
    if (Error err = checkChip(options.chip))
      return err;
    if (!is_contained({"isa", "bin", "fatbin"}, options.gpuFormat))
      return createStringError("unknown GPU binary format '" +
                               options.gpuFormat +
                               "' (--gpu-format): expected isa, bin or fatbin");
  }

  ErrorOr<std::unique_ptr<MemoryBuffer>> file =
      MemoryBuffer::getFileOrSTDIN(inputPath);
  if (!file)
    return createStringError("cannot read '" + inputPath +
                             "': " + file.getError().message());
  if (Error err = runtime::checkNestingDepth((*file)->getBuffer()))
    return createStringError("'" + inputPath + "': " + toString(std::move(err)));

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  kvmerge::registerAllDialects(registry);
  mlir::registerAllToLLVMIRTranslations(registry);
  mlir::MLIRContext context(registry);
  SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(*file), SMLoc());
  std::string diagnostics;
  raw_string_ostream diagnosticStream(diagnostics);
  mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context,
                                           diagnosticStream);
  auto diagnosed = [&](const Twine &what) {
    StringRef text = StringRef(diagnostics).rtrim();
    return createStringError(what + (text.empty() ? "" : ":\n" + text));
  };
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr,
                                            mlir::ParserConfig(&context));
  if (!module)
    return diagnosed("failed to parse '" + inputPath + "'");

  // Record the ABI, lower, emit the ABI.
  std::string target;
  mlir::PassManager pm(&context, mlir::ModuleOp::getOperationName());
  pm.addPass(kvmerge::createAOTRecordABI());
  if (options.target == "cpu") {
    kvmerge::LowerToLLVMOptions lowering;
    if (mlir::failed(lowering.parseFromString(options.pipelineOptions)))
      return createStringError("invalid --pipeline-options '" +
                               options.pipelineOptions +
                               "' for --kvmerge-lower-to-llvm");
    kvmerge::buildLowerToLLVMPipeline(pm, lowering);
    target = "cpu " + cpu;
  } else {
    kvmerge::LowerToNVVMOptions lowering;
    if (mlir::failed(lowering.parseFromString(options.pipelineOptions)))
      return createStringError("invalid --pipeline-options '" +
                               options.pipelineOptions +
                               "' for --kvmerge-lower-to-nvvm");
    lowering.chip = options.chip;
    lowering.features = options.features;
    lowering.format = options.gpuFormat;
    if (!options.cudaPath.empty())
      lowering.cudaPath = options.cudaPath;
    kvmerge::buildLowerToNVVMPipeline(pm, lowering);
    target = "cuda " + options.chip + " " + options.gpuFormat;
  }
  kvmerge::AOTExportABIOptions exportOptions;
  exportOptions.target = target;
  pm.addPass(kvmerge::createAOTExportABI(exportOptions));
  if (mlir::failed(pm.run(*module)))
    return diagnosed("failed to compile '" + inputPath + "' for " + target);
  if (options.emit == "mlir")
    return writeOutput(outputPath,
                       [&](raw_ostream &os) { module->print(os); });

  // LLVM IR for the host, optimized as the JIT does.
  LLVMContext llvmContext;
  std::unique_ptr<Module> llvmModule =
      mlir::translateModuleToLLVMIR(*module, llvmContext, inputPath);
  if (!llvmModule)
    return diagnosed("failed to translate '" + inputPath + "' to LLVM IR");
  static const CodeGenOptLevel levels[] = {
      CodeGenOptLevel::None, CodeGenOptLevel::Less, CodeGenOptLevel::Default,
      CodeGenOptLevel::Aggressive};
  std::unique_ptr<TargetMachine> machine(hostTarget->createTargetMachine(
      triple, cpu, features, TargetOptions(), Reloc::PIC_, std::nullopt,
      levels[options.optLevel]));
  if (!machine)
    return createStringError("cannot create a target machine for '" +
                             triple.str() + "'");
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(machine->createDataLayout());
  if (Error err = mlir::makeOptimizingTransformer(
          options.optLevel, /*sizeLevel=*/0, machine.get())(llvmModule.get()))
    return createStringError("optimizing the host code failed: " +
                             toString(std::move(err)));
  if (options.emit == "llvm")
    return writeOutput(outputPath,
                       [&](raw_ostream &os) { llvmModule->print(os, nullptr); });

  // The position-independent host object.
  TempPath temporaryObject;
  std::string objectPath = outputPath.str();
  if (options.emit == "shared") {
    if (Error err = temporaryObject.create("kvmerge-aot", "o"))
      return err;
    objectPath = temporaryObject.path.str().str();
  }
  {
    std::error_code ec;
    ToolOutputFile object(objectPath, ec, sys::fs::OF_None);
    if (ec)
      return createStringError("cannot open '" + objectPath +
                               "': " + ec.message());
    legacy::PassManager codegen;
    if (machine->addPassesToEmitFile(codegen, object.os(), nullptr,
                                     CodeGenFileType::ObjectFile))
      return createStringError("the host target cannot emit object files");
    codegen.run(*llvmModule);
    object.os().flush();
    if (object.os().has_error())
      return createStringError("cannot write '" + objectPath + "'");
    object.keep();
  }
  if (options.emit == "obj")
    return Error::success();
  return link(objectPath, outputPath, options, argv0);
}
