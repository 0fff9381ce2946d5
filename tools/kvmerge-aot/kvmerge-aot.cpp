//===- kvmerge-aot.cpp - compile a module into a deployable artifact ------===//
//
//   kvmerge-aot in.mlir --target=cuda --chip=sm_90a -o libfoo.so
//   kvmerge-aot in.mlir --target=cpu -o libfoo.so
//   kvmerge-aot in.mlir --target=cuda --emit=mlir|llvm|obj -o out
//
// The shared object runs without LLVM or MLIR (C ABI: include/kvmerge-c/AOT.h;
// Python: kvmerge.aot; .npy runner: kvmerge-aot-run). See docs/aot.md.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/AOT/AOTCompiler.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

static cl::OptionCategory category("kvmerge-aot options");

static cl::opt<std::string> inputFilename(cl::Positional,
                                          cl::desc("<input .mlir file>"),
                                          cl::init("-"), cl::cat(category));
static cl::opt<std::string>
    outputFilename("o", cl::desc("Output file (- = stdout for text emits)"),
                   cl::value_desc("file"), cl::Required, cl::cat(category));
static cl::opt<std::string>
    target("target",
           cl::desc("cpu (host kernels) or cuda (NVIDIA GPU kernels; the "
                    "artifact opens libcuda.so.1 at run time)"),
           cl::init("cpu"), cl::cat(category));
static cl::opt<std::string> emit(
    "emit",
    cl::desc("shared (default: a .so with the C ABI), obj (host object, "
             "linked by you with libKVMergeAOTRuntime.a), llvm (LLVM IR), "
             "mlir (the lowered module, LLVM dialect)"),
    cl::init("shared"), cl::cat(category));
static cl::opt<std::string>
    chip("chip", cl::desc("cuda: target SM (sm_80, sm_90, sm_90a, ...)"),
         cl::init("sm_90a"), cl::cat(category));
static cl::opt<std::string>
    features("features", cl::desc("cuda: PTX ISA version (+ptx80, ...)"),
             cl::init("+ptx80"), cl::cat(category));
static cl::opt<std::string> gpuFormat(
    "gpu-format",
    cl::desc("cuda: how the kernels are embedded: fatbin (cubin for --chip "
             "plus its PTX; needs ptxas and fatbinary now), bin (cubin), isa "
             "(PTX only, compiled by the driver at load time)"),
    cl::init("fatbin"), cl::cat(category));
static cl::opt<std::string>
    cudaPath("cuda-path",
             cl::desc("cuda: toolkit with libdevice, ptxas and fatbinary "
                      "(default: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda)"),
             cl::init(""), cl::cat(category));
static cl::opt<std::string> mcpu(
    "mcpu",
    cl::desc("Host CPU of the artifact's host code (default x86-64-v3: any "
             "x86-64 with AVX2; native = this machine, not portable)"),
    cl::init("x86-64-v3"), cl::cat(category));
static cl::opt<std::string> mattr("mattr",
                                  cl::desc("Host CPU features (+avx512f,...)"),
                                  cl::init(""), cl::cat(category));
static cl::opt<unsigned> optLevel("opt-level",
                                  cl::desc("Host optimization level (0-3)"),
                                  cl::init(3), cl::cat(category));
static cl::opt<std::string> pipelineOptions(
    "pipeline-options",
    cl::desc("More options of the lowering pipeline (--kvmerge-lower-to-llvm "
             "for cpu, e.g. fuse-merge=false; --kvmerge-lower-to-nvvm for "
             "cuda, e.g. dump-ptx=DIR); --chip, --features, --gpu-format and "
             "--cuda-path win over the same options here"),
    cl::init(""), cl::cat(category));
static cl::opt<std::string>
    cxx("cxx",
        cl::desc("C++ compiler driver that links the artifact (default: the "
                 "one kvmerge was built with)"),
        cl::init(""), cl::cat(category));
static cl::opt<std::string> runtimeLib(
    "runtime-lib",
    cl::desc("libKVMergeAOTRuntime.a to link (default: ../lib/ next to this "
             "tool)"),
    cl::init(""), cl::cat(category));
static cl::list<std::string>
    linkArgs("link-arg", cl::desc("Extra argument for the link step"),
             cl::cat(category));

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "kvmerge-aot: compile an .mlir module (kvcache and upstream tensor IR) "
      "into a shared object that runs without LLVM or MLIR (docs/aot.md)\n");
  kvmerge::aot::AOTOptions options;
  options.target = target;
  options.emit = emit;
  options.chip = chip;
  options.features = features;
  options.gpuFormat = gpuFormat;
  options.cudaPath = cudaPath;
  options.mcpu = mcpu;
  options.mattr = mattr;
  options.optLevel = optLevel;
  options.pipelineOptions = pipelineOptions;
  options.cxx = cxx;
  options.runtimeLib = runtimeLib;
  options.linkArgs.assign(linkArgs.begin(), linkArgs.end());
  if (Error err = kvmerge::aot::compile(inputFilename, outputFilename, options,
                                        argv[0])) {
    WithColor::error(errs(), "kvmerge-aot") << toString(std::move(err))
                                            << "\n";
    return 1;
  }
  return 0;
}
