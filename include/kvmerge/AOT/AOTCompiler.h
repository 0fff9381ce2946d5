//===- AOTCompiler.h - build ahead-of-time artifacts ------------*- C++ -*-===//
//
// What `kvmerge-aot` does (docs/aot.md): an .mlir module in, a shared object
// out that runs without LLVM or MLIR:
//
//   parse -> kvmerge-aot-record-abi -> --kvmerge-lower-to-llvm (cpu) or
//   --kvmerge-lower-to-nvvm (cuda: kernels embedded as PTX / cubin / fatbin)
//   -> kvmerge-aot-export-abi -> LLVM IR -> optimized (-O3) -> host object
//   (position-independent) -> linked by the C++ driver kvmerge was built
//   with, together with libKVMergeAOTRuntime.a, into a shared object that
//   exports only the C ABI of include/kvmerge-c/AOT.h (and _mlir_ciface_*).
//
// Every stage can be the output (`emit`): the lowered MLIR, LLVM IR, the
// object file or the shared object.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_AOT_AOTCOMPILER_H
#define KVMERGE_AOT_AOTCOMPILER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace kvmerge::aot {

struct AOTOptions {
  /// "cpu" (host kernels) or "cuda" (NVIDIA GPU kernels).
  std::string target = "cpu";
  /// "shared" (.so), "obj" (.o), "llvm" (.ll), "mlir" (lowered LLVM dialect).
  std::string emit = "shared";
  /// Host code: CPU name and features for the LLVM target machine; "native"
  /// is this machine's (not portable).
  std::string mcpu = "x86-64-v3";
  std::string mattr;
  /// Host optimization level (0-3).
  unsigned optLevel = 3;
  /// Extra options of the lowering pipeline, in its textual form (e.g.
  /// "fuse-merge=false" for cpu, "dump-ptx=dir" for cuda).
  std::string pipelineOptions;
  /// cuda: the chip, PTX features, gpu-module-to-binary format (isa, bin,
  /// fatbin) and the toolkit (libdevice, ptxas, fatbinary; "" = search).
  std::string chip = "sm_90a";
  std::string features = "+ptx80";
  std::string gpuFormat = "fatbin";
  std::string cudaPath;
  /// Linking: the C++ compiler driver ("" = the one kvmerge was built with),
  /// libKVMergeAOTRuntime.a ("" = next to the tool: ../lib/), extra
  /// arguments for the driver.
  std::string cxx;
  std::string runtimeLib;
  std::vector<std::string> linkArgs;
};

/// Compiles `inputPath` ("-" = stdin) into `outputPath` ("-" = stdout for
/// the text emits). `argv0` locates the runtime library by default. Errors
/// carry the MLIR diagnostics or the linker's output.
llvm::Error compile(llvm::StringRef inputPath, llvm::StringRef outputPath,
                    const AOTOptions &options, const char *argv0);

} // namespace kvmerge::aot

#endif // KVMERGE_AOT_AOTCOMPILER_H
