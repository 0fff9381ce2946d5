//===- CudaRuntime.h - CUDA driver, opened at run time ----------*- C++ -*-===//
//
// kvmerge's GPU runtime for `kvmerge-run --device=cuda`. The CUDA driver
// (libcuda.so.1) is opened with dlopen on first use: nothing in kvmerge links
// against CUDA, so the project builds and runs its CPU path on machines
// without a driver, and `--device=cuda` fails there with one clear message.
//
// Code lowered by --kvmerge-lower-to-nvvm calls MLIR's `mgpu*` runtime ABI
// (mgpuModuleLoadJIT, mgpuLaunchKernel, mgpuMemAlloc, mgpuMemcpy, ...);
// CudaDriver.h implements that ABI on the driver API (LLVM-free, also
// linked into ahead-of-time artifacts); this header adapts it to
// llvm::Error and hands the addresses to the JIT (see symbols()).
//
// Errors inside mgpu* calls (which have no error channel) are recorded; the
// first one is returned by takeError().
//
// With KVMERGE_CUDA_KERNEL_TIMES=1 in the environment, every launch is timed
// with CUDA events and a per-kernel table is printed to stderr at exit:
//   kvmerge-cuda-kernel-time <name> calls=<n> total_ms=<t> mean_us=<m>
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_CUDARUNTIME_H
#define KVMERGE_RUNTIME_CUDARUNTIME_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <utility>
#include <vector>

namespace kvmerge::runtime::cuda {

/// Opens the driver, initializes it and makes device 0's primary context
/// current. Idempotent; the error (no libcuda.so.1, no device, ...) is the
/// same on every call.
llvm::Error initialize();

/// "sm_XY" of device 0 (after a successful initialize()).
std::string chip();
/// The device name, for reports.
std::string deviceName();

/// The first error recorded by an mgpu* call since the last takeError().
llvm::Error takeError();

/// Name and address of every mgpu* function, for the JIT's symbol table.
std::vector<std::pair<llvm::StringRef, void *>> symbols();

} // namespace kvmerge::runtime::cuda

#endif // KVMERGE_RUNTIME_CUDARUNTIME_H
