//===- CudaDriver.h - mgpu* ABI on a dlopen'ed CUDA driver ------*- C++ -*-===//
//
// The one implementation of MLIR's `mgpu*` GPU runtime ABI in kvmerge, on the
// CUDA driver API with libcuda.so.1 opened by dlopen on first use. It is
// plain C++17 (no LLVM, no MLIR, no CUDA headers), so that it serves both
//
//  * the JIT (`kvmerge-run --device=cuda`, through CudaRuntime.h, which
//    hands these addresses to mlir::ExecutionEngine), and
//  * ahead-of-time artifacts (kvmerge-aot, docs/aot.md), into which it is
//    linked statically (libKVMergeAOTRuntime.a) with hidden visibility.
//
// Code lowered by --kvmerge-lower-to-nvvm calls mgpuModuleLoad(JIT) from a
// global constructor, then mgpuModuleGetFunction, mgpuLaunchKernel,
// mgpuMemAlloc, mgpuMemcpy, ...: these have no error channel, so the first
// error is recorded and returned by takeError().
//
// With KVMERGE_CUDA_KERNEL_TIMES=1 in the environment (or setKernelTiming),
// every launch is timed with CUDA events; kernelTimes() gives, and the exit
// of a process that timed anything prints to stderr, one line per kernel:
//   kvmerge-cuda-kernel-time <name> calls=<n> total_ms=<t> mean_us=<m>
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_CUDADRIVER_H
#define KVMERGE_RUNTIME_CUDADRIVER_H

#include <cstddef>
#include <string>
#include <vector>

namespace kvmerge::runtime::cudadriver {

struct InitStatus {
  /// Empty when the driver is open and device 0's context is current.
  std::string error;
  /// The error means "no usable driver on this machine" (libcuda.so.1
  /// missing, or cuInit failing); callers append how to get one.
  bool noDriver = false;
};

/// Opens the driver, initializes it and retains device 0's primary context.
/// Idempotent and thread-safe; every call returns the same status.
const InitStatus &initialize();

/// "sm_XY" of device 0 and its name (after a successful initialize()).
std::string chip();
std::string deviceName();

/// The first error recorded by an mgpu* call since the last takeError(),
/// or "" when there was none.
std::string takeError();

/// Kernel timing (see the file comment).
void setKernelTiming(bool enabled);
std::string kernelTimes();
void resetKernelTimes();

/// Name and address of every mgpu* function (for a JIT's symbol table).
struct Symbol {
  const char *name;
  void *address;
};
std::vector<Symbol> symbols();

} // namespace kvmerge::runtime::cudadriver

#endif // KVMERGE_RUNTIME_CUDADRIVER_H
