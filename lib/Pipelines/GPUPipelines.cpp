//===- GPUPipelines.cpp - --kvmerge-lower-to-nvvm -------------------------===//
//
// The NVIDIA GPU pipeline (docs/gpu.md): the CPU pipeline's tensor-level and
// bufferization steps with the kvcache ops mapped to gpu.launch kernels,
// then device staging, outlining, NVVM and gpu-module-to-binary (PTX by
// default), then the host to LLVM with gpu-to-llvm (mgpu* runtime calls,
// provided at run time by kvmerge's dlopen-based CUDA runtime).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Pipelines/Pipelines.h"

#include "kvmerge/Conversion/Passes.h"
#include "kvmerge/Dialect/KVCache/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/CompilationInterfaces.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <memory>

extern "C" void LLVMInitializeNVPTXTargetInfo();
extern "C" void LLVMInitializeNVPTXTargetMC();

using namespace mlir;

namespace {
/// Writes every object of every gpu.binary to `dir`:
/// `<binary>.<chip>.ptx` (assembly), `.cubin` (binary), `.fatbin`, `.o`.
struct DumpGPUBinariesPass
    : public PassWrapper<DumpGPUBinariesPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(DumpGPUBinariesPass)
  DumpGPUBinariesPass() = default;
  DumpGPUBinariesPass(const DumpGPUBinariesPass &other) : PassWrapper(other) {}
  explicit DumpGPUBinariesPass(std::string d) { dir = std::move(d); }
  StringRef getArgument() const final { return "kvmerge-dump-gpu-binaries"; }
  StringRef getDescription() const final {
    return "Write the objects of every gpu.binary (e.g. PTX) to files";
  }
  Option<std::string> dir{*this, "dir",
                          llvm::cl::desc("Output directory (created)"),
                          llvm::cl::init(".")};

  void runOnOperation() override {
    if (std::error_code ec = llvm::sys::fs::create_directories(dir)) {
      getOperation().emitError()
          << "cannot create '" << dir << "': " << ec.message();
      return signalPassFailure();
    }
    WalkResult result = getOperation().walk([&](gpu::BinaryOp binary) {
      for (Attribute attr : binary.getObjects()) {
        auto object = dyn_cast<gpu::ObjectAttr>(attr);
        if (!object)
          continue;
        std::string chip = "target";
        if (auto nvvm = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget()))
          chip = nvvm.getChip().str();
        StringRef ext = ".o";
        switch (object.getFormat()) {
        case gpu::CompilationTarget::Assembly:
          ext = ".ptx";
          break;
        case gpu::CompilationTarget::Binary:
          ext = ".cubin";
          break;
        case gpu::CompilationTarget::Fatbin:
          ext = ".fatbin";
          break;
        default:
          break;
        }
        SmallString<256> path(dir.getValue());
        llvm::sys::path::append(path, binary.getSymName() + "." + chip + ext);
        std::error_code ec;
        llvm::raw_fd_ostream os(path, ec);
        if (ec) {
          binary.emitError()
              << "cannot write '" << path << "': " << ec.message();
          return WalkResult::interrupt();
        }
        os << object.getObject().getValue();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
/// Refuses a chip or feature the LLVM NVPTX target does not know (code
/// generation for an unknown CPU aborts with `LLVM ERROR: Cannot select`),
/// and a PTX version below the chip's minimum (a fatal error in NVPTX), with
/// one diagnostic before anything is lowered.
struct CheckNVVMTargetPass
    : public PassWrapper<CheckNVVMTargetPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(CheckNVVMTargetPass)
  CheckNVVMTargetPass() = default;
  CheckNVVMTargetPass(const CheckNVVMTargetPass &other) : PassWrapper(other) {}
  CheckNVVMTargetPass(std::string c, std::string f) {
    chip = std::move(c);
    features = std::move(f);
  }
  StringRef getArgument() const final { return "kvmerge-check-nvvm-target"; }
  StringRef getDescription() const final {
    return "Check an NVVM chip and features against the LLVM NVPTX target";
  }
  Option<std::string> chip{*this, "chip", llvm::cl::desc("NVIDIA chip"),
                           llvm::cl::init("sm_90a")};
  Option<std::string> features{*this, "features",
                               llvm::cl::desc("NVPTX target features"),
                               llvm::cl::init("+ptx80")};

  /// The PTX version a `ptxNN` feature name stands for (80 for ptx80), or 0.
  static unsigned ptxVersion(StringRef feature) {
    unsigned version = 0;
    if (!feature.consume_front("ptx") || feature.getAsInteger(10, version))
      return 0;
    return version;
  }

  /// A lower bound of the PTX ISA version that introduced `chip` (PTX ISA
  /// release notes; 0 when unknown). NVPTX has its own table and aborts on a
  /// lower version; a bound below its value only lets NVPTX report it.
  static unsigned minimumPTXVersion(StringRef chip) {
    unsigned sm = 0;
    StringRef digits = chip.drop_front(3).take_while(llvm::isDigit);
    if (digits.getAsInteger(10, sm))
      return 0;
    bool archSpecific = chip.drop_front(3 + digits.size()).starts_with("a");
    if (sm >= 100)
      return 86;
    if (sm == 90)
      return archSpecific ? 80 : 78;
    for (auto [version, ptx] : {std::pair<unsigned, unsigned>{89, 78},
                                {87, 74},
                                {86, 71},
                                {80, 70},
                                {75, 63},
                                {72, 61},
                                {70, 60}})
      if (sm >= version)
        return ptx;
    return 0;
  }

  void runOnOperation() override {
    auto fail = [&](const Twine &message) {
      // At the module's location, without dumping the module.
      mlir::emitError(getOperation().getLoc())
          << "kvmerge-lower-to-nvvm: " << message;
      signalPassFailure();
    };
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTargetMC();
    llvm::Triple triple("nvptx64-nvidia-cuda");
    std::string error;
    const llvm::Target *target =
        llvm::TargetRegistry::lookupTarget(triple, error);
    if (!target)
      return fail("the LLVM NVPTX target is not available: " + error);
    std::unique_ptr<llvm::MCSubtargetInfo> any(
        target->createMCSubtargetInfo(triple, "", ""));
    if (!any)
      return fail("cannot query the LLVM NVPTX target");
    if (!any->isCPUStringValid(chip)) {
      std::string known;
      for (const llvm::SubtargetSubTypeKV &cpu :
           any->getAllProcessorDescriptions())
        if (StringRef(cpu.Key).starts_with("sm_"))
          known += (known.empty() ? "" : ", ") + std::string(cpu.Key);
      return fail("unknown chip '" + chip +
                  "' (chip=...; the LLVM NVPTX target knows " + known + ")");
    }
    unsigned requestedPTX = 0;
    SmallVector<StringRef> parts;
    StringRef(features).split(parts, ',', -1, /*KeepEmpty=*/false);
    for (StringRef part : parts) {
      StringRef name = part.trim();
      if (!name.consume_front("+") && !name.consume_front("-"))
        return fail("feature '" + part +
                    "' must start with '+' or '-' (features=..., e.g. +ptx80)");
      bool known = llvm::any_of(
          any->getAllProcessorFeatures(),
          [&](const llvm::SubtargetFeatureKV &kv) { return name == kv.Key; });
      if (!known)
        return fail("unknown feature '" + name +
                    "' (features=...; e.g. +ptx80, +ptx86)");
      if (part.trim().starts_with("+"))
        requestedPTX = std::max(requestedPTX, ptxVersion(name));
    }
    unsigned minimumPTX = minimumPTXVersion(chip);
    if (requestedPTX && requestedPTX < minimumPTX)
      return fail("chip '" + chip + "' needs PTX " + Twine(minimumPTX / 10) +
                  "." + Twine(minimumPTX % 10) + " or newer, but features='" +
                  features + "' asks for PTX " + Twine(requestedPTX / 10) +
                  "." + Twine(requestedPTX % 10) + " (give +ptx" +
                  Twine(minimumPTX) + ")");
  }
};

/// ptxas sizes registers for the occupancy that `.maxntid` allows (with
/// 128 threads it capped a merge kernel at 40 registers and spilled).
/// `nvvm.minctasm = 1024 / threads` asks for 1024 resident threads per SM
/// instead, i.e. up to 64 registers per thread.
struct OccupancyHintsPass
    : public PassWrapper<OccupancyHintsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(OccupancyHintsPass)
  StringRef getArgument() const final { return "kvmerge-gpu-occupancy-hints"; }
  StringRef getDescription() const final {
    return "Set nvvm.minctasm on kernels with a known block size";
  }
  void runOnOperation() override {
    getOperation().walk([&](gpu::GPUFuncOp func) {
      std::optional<ArrayRef<int32_t>> block = func.getKnownBlockSize();
      if (!func.isKernel() || !block || func->hasAttr("nvvm.minctasm"))
        return;
      int64_t threads = 1;
      for (int32_t size : *block)
        threads *= size;
      int64_t ctas = std::max<int64_t>(1, 1024 / std::max<int64_t>(threads, 1));
      func->setAttr(
          "nvvm.minctasm",
          IntegerAttr::get(IntegerType::get(&getContext(), 32), ctas));
    });
  }
};
} // namespace

std::unique_ptr<Pass> kvmerge::createDumpGPUBinariesPass(std::string dir) {
  return std::make_unique<DumpGPUBinariesPass>(std::move(dir));
}

/// The CUDA toolkit to take libdevice from: the option, else the first of
/// $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, /usr/lib/cuda that has
/// nvvm/libdevice/libdevice.10.bc; "" (MLIR's default) if none has.
static std::string findCudaToolkit(StringRef option) {
  if (!option.empty())
    return option.str();
  SmallVector<std::string> candidates;
  for (const char *var : {"CUDA_HOME", "CUDA_PATH"})
    if (const char *value = std::getenv(var); value && *value)
      candidates.push_back(value);
  candidates.push_back("/usr/local/cuda");
  candidates.push_back("/usr/lib/cuda");
  for (const std::string &dir : candidates) {
    SmallString<256> path(dir);
    llvm::sys::path::append(path, "nvvm", "libdevice", "libdevice.10.bc");
    if (llvm::sys::fs::exists(path))
      return dir;
  }
  return "";
}

void kvmerge::buildLowerToNVVMPipeline(OpPassManager &pm,
                                       const LowerToNVVMOptions &options) {
  pm.addPass(std::make_unique<CheckNVVMTargetPass>(options.chip.getValue(),
                                                   options.features.getValue()));
  // Tensor level, as on the CPU; kvcache ops become kernels, the rest loops.
  pm.addNestedPass<func::FuncOp>(createConvertElementwiseToLinalgPass());
  pm.addPass(createDecomposeAggregatesPass());
  pm.addPass(kvcache::createKVCacheDecomposeCompress());
  pm.addPass(createConvertKVCacheToGPU());
  pm.addPass(createConvertKVCacheToLoops());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  // Bufferize exactly like the CPU pipeline (out-params, deallocation).
  addBufferizeToOutParams(pm);
  // Kernels out of the host functions; launches look like calls to the
  // buffer deallocation (which rejects gpu ops: unknown memory effects).
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(std::make_unique<OccupancyHintsPass>());
  pm.addPass(createKVMergeGPUHideLaunches());
  bufferization::buildBufferDeallocationPipeline(pm);
  pm.addPass(createCanonicalizerPass());
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  pm.addPass(createKVMergeGPURestoreLaunches());

  // Device buffers for the kernels, async tokens for gpu-to-llvm.
  pm.addPass(createKVMergeGPUStageBuffers());
  pm.addNestedPass<func::FuncOp>(createGpuAsyncRegionPass());
  if (options.emitCInterface)
    pm.addPass(createEmitCInterfacePass());

  // As upstream's gpu-lower-to-nvvm-pipeline.
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features;
  target.optLevel = options.optLevel;
  pm.addPass(createGpuNVVMAttachTarget(target));
  pm.addPass(createLowerAffinePass());
  // Host code of ops left to convert-kvcache-to-loops (vector lanes).
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createConvertGpuOpsToNVVMOps());
  pm.addNestedPass<gpu::GPUModuleOp>(createCanonicalizerPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createCSEPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createReconcileUnrealizedCastsPass());
  pm.addPass(createGpuToLLVMConversionPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = options.format;
  binary.toolkitPath = findCudaToolkit(options.cudaPath);
  pm.addPass(createGpuModuleToBinaryPass(binary));
  if (!options.dumpPTX.empty())
    pm.addPass(createDumpGPUBinariesPass(options.dumpPTX));
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void kvmerge::registerGPUPipelines() {
  PassPipelineRegistration<LowerToNVVMOptions>(
      "kvmerge-lower-to-nvvm",
      "Lower kvcache and upstream tensor IR to host LLVM with NVIDIA GPU "
      "kernels embedded as gpu.binary (PTX by default; see docs/gpu.md)",
      buildLowerToNVVMPipeline);
  PassRegistration<DumpGPUBinariesPass>();
  PassRegistration<OccupancyHintsPass>();
  PassRegistration<CheckNVVMTargetPass>();
}
