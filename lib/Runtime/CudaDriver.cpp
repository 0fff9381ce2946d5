//===- CudaDriver.cpp - mgpu* ABI on a dlopen'ed CUDA driver --------------===//
//
// See include/kvmerge/Runtime/CudaDriver.h. Plain C++17: no LLVM, no MLIR,
// no CUDA headers (the few driver declarations we need are written out), so
// that ahead-of-time artifacts can link it statically.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/CudaDriver.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <mutex>

using namespace kvmerge::runtime;

namespace {

// Driver API subset (cuda.h, stable ABI).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;
constexpr int kAttrComputeMajor = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kAttrComputeMinor = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
constexpr unsigned kStreamNonBlocking = 1;
constexpr unsigned kMemAttachGlobal = 1;

struct Driver {
  void *handle = nullptr;
  CUresult (*cuInit)(unsigned);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, unsigned, CUstream,
                             void **, void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemAllocManaged)(CUdeviceptr *, size_t, unsigned);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);

  CUdevice device = 0;
  CUcontext context = nullptr;
  std::string chip, name;
};

struct State {
  std::once_flag once;
  cudadriver::InitStatus init;
  Driver driver;
  std::mutex mutex;
  std::string firstError;
  // Kernel timing.
  bool timing = false;
  std::map<CUfunction, std::string> names;
  struct Time {
    unsigned calls = 0;
    double ms = 0;
  };
  std::map<std::string, Time> times;

  std::string formatTimes() {
    std::string text;
    char line[512];
    for (auto &[name, t] : times) {
      std::snprintf(line, sizeof(line),
                    "kvmerge-cuda-kernel-time %s calls=%u total_ms=%.4f "
                    "mean_us=%.3f\n",
                    name.c_str(), t.calls, t.ms, 1000.0 * t.ms / t.calls);
      text += line;
    }
    return text;
  }
  ~State() {
    if (timing && !times.empty())
      std::fputs(formatTimes().c_str(), stderr);
  }
};

State &state() {
  static State s;
  return s;
}

std::string describe(CUresult result) {
  const char *text = nullptr;
  Driver &d = state().driver;
  if (d.cuGetErrorString && d.cuGetErrorString(result, &text) == 0 && text)
    return std::string(text) + " (CUresult " + std::to_string(result) + ")";
  return "CUresult " + std::to_string(result);
}

void record(const std::string &message) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.firstError.empty())
    s.firstError = message;
}

/// Records a failed driver call; returns whether it succeeded.
bool check(CUresult result, const char *what) {
  if (result == 0)
    return true;
  record(std::string("CUDA driver call ") + what + " failed: " +
         describe(result));
  return false;
}

template <typename F> bool resolve(void *handle, F &fn, const char *name) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  return fn != nullptr;
}

void doInitialize(State &s) {
  Driver &d = s.driver;
  cudadriver::InitStatus &init = s.init;
  d.handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!d.handle) {
    const char *why = dlerror();
    init.error = std::string("cannot load the CUDA driver (libcuda.so.1): ") +
                 (why ? why : "not found");
    init.noDriver = true;
    return;
  }
  bool ok = true;
#define KV_RESOLVE(field, symbol) ok &= resolve(d.handle, d.field, symbol)
  KV_RESOLVE(cuInit, "cuInit");
  KV_RESOLVE(cuGetErrorString, "cuGetErrorString");
  KV_RESOLVE(cuDeviceGetCount, "cuDeviceGetCount");
  KV_RESOLVE(cuDeviceGet, "cuDeviceGet");
  KV_RESOLVE(cuDeviceGetAttribute, "cuDeviceGetAttribute");
  KV_RESOLVE(cuDeviceGetName, "cuDeviceGetName");
  KV_RESOLVE(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  KV_RESOLVE(cuCtxSetCurrent, "cuCtxSetCurrent");
  KV_RESOLVE(cuModuleLoadData, "cuModuleLoadData");
  KV_RESOLVE(cuModuleUnload, "cuModuleUnload");
  KV_RESOLVE(cuModuleGetFunction, "cuModuleGetFunction");
  KV_RESOLVE(cuLaunchKernel, "cuLaunchKernel");
  KV_RESOLVE(cuStreamCreate, "cuStreamCreate");
  KV_RESOLVE(cuStreamDestroy, "cuStreamDestroy_v2");
  KV_RESOLVE(cuStreamSynchronize, "cuStreamSynchronize");
  KV_RESOLVE(cuStreamWaitEvent, "cuStreamWaitEvent");
  KV_RESOLVE(cuEventCreate, "cuEventCreate");
  KV_RESOLVE(cuEventDestroy, "cuEventDestroy_v2");
  KV_RESOLVE(cuEventRecord, "cuEventRecord");
  KV_RESOLVE(cuEventSynchronize, "cuEventSynchronize");
  KV_RESOLVE(cuEventElapsedTime, "cuEventElapsedTime");
  KV_RESOLVE(cuMemAlloc, "cuMemAlloc_v2");
  KV_RESOLVE(cuMemAllocManaged, "cuMemAllocManaged");
  KV_RESOLVE(cuMemFree, "cuMemFree_v2");
  KV_RESOLVE(cuMemcpyAsync, "cuMemcpyAsync");
  KV_RESOLVE(cuMemsetD32Async, "cuMemsetD32Async");
  KV_RESOLVE(cuMemsetD16Async, "cuMemsetD16Async");
#undef KV_RESOLVE
  if (!ok) {
    init.error = "the CUDA driver (libcuda.so.1) lacks a required entry "
                 "point; it is too old for kvmerge";
    return;
  }
  CUresult r = d.cuInit(0);
  if (r != 0) {
    init.error = "CUDA driver initialization failed: " + describe(r);
    init.noDriver = true;
    return;
  }
  int count = 0;
  r = d.cuDeviceGetCount(&count);
  if (r != 0 || count == 0) {
    init.error =
        "no CUDA device found" + (r != 0 ? ": " + describe(r) : std::string());
    return;
  }
  int major = 0, minor = 0;
  char name[256] = {0};
  if ((r = d.cuDeviceGet(&d.device, 0)) != 0 ||
      (r = d.cuDeviceGetAttribute(&major, kAttrComputeMajor, d.device)) != 0 ||
      (r = d.cuDeviceGetAttribute(&minor, kAttrComputeMinor, d.device)) != 0 ||
      (r = d.cuDeviceGetName(name, sizeof(name) - 1, d.device)) != 0 ||
      (r = d.cuDevicePrimaryCtxRetain(&d.context, d.device)) != 0 ||
      (r = d.cuCtxSetCurrent(d.context)) != 0) {
    init.error = "cannot open CUDA device 0: " + describe(r);
    return;
  }
  d.chip = "sm_" + std::to_string(major) + std::to_string(minor);
  d.name = name;
  const char *timing = std::getenv("KVMERGE_CUDA_KERNEL_TIMES");
  if (timing && *timing && std::strcmp(timing, "0") != 0)
    s.timing = true;
}

/// The driver with device 0's context current on this thread, or null
/// (error recorded).
Driver *driver() {
  State &s = state();
  std::call_once(s.once, [&] { doInitialize(s); });
  if (!s.init.error.empty()) {
    record(s.init.error);
    return nullptr;
  }
  if (!check(s.driver.cuCtxSetCurrent(s.driver.context), "cuCtxSetCurrent"))
    return nullptr;
  return &s.driver;
}

} // namespace

//===----------------------------------------------------------------------===//
// The mgpu* ABI (as emitted by gpu-to-llvm and the gpu.binary translation).
// External linkage, so that an artifact's host code links against them;
// hidden, so that no library that contains them exports them.
//===----------------------------------------------------------------------===//

#define KV_MGPU extern "C" __attribute__((visibility("hidden")))

KV_MGPU void *mgpuModuleLoad(void *data, size_t /*size*/) {
  Driver *d = driver();
  CUmodule module = nullptr;
  if (d)
    check(d->cuModuleLoadData(&module, data), "cuModuleLoadData");
  return module;
}

KV_MGPU void *mgpuModuleLoadJIT(void *data, int /*optLevel*/) {
  // PTX text (null-terminated): the driver JIT-compiles it for the device.
  return mgpuModuleLoad(data, 0);
}

KV_MGPU void mgpuModuleUnload(void *module) {
  Driver *d = driver();
  if (d && module)
    check(d->cuModuleUnload(static_cast<CUmodule>(module)), "cuModuleUnload");
}

KV_MGPU void *mgpuModuleGetFunction(void *module, const char *name) {
  Driver *d = driver();
  CUfunction function = nullptr;
  if (!d || !module) {
    record(std::string("kernel '") + name +
           "' is unavailable: its module did not load");
    return nullptr;
  }
  if (check(d->cuModuleGetFunction(&function, static_cast<CUmodule>(module),
                                   name),
            "cuModuleGetFunction")) {
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.names[function] = name;
  }
  return function;
}

KV_MGPU void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                              intptr_t gridZ, intptr_t blockX, intptr_t blockY,
                              intptr_t blockZ, int32_t smem, void *stream,
                              void **params, void **extra,
                              size_t /*paramsCount*/) {
  Driver *d = driver();
  if (!d || !function)
    return;
  State &s = state();
  bool timing;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    timing = s.timing;
  }
  CUevent begin = nullptr, end = nullptr;
  if (timing) {
    check(d->cuEventCreate(&begin, 0), "cuEventCreate");
    check(d->cuEventCreate(&end, 0), "cuEventCreate");
    check(d->cuEventRecord(begin, static_cast<CUstream>(stream)),
          "cuEventRecord");
  }
  check(d->cuLaunchKernel(static_cast<CUfunction>(function), gridX, gridY,
                          gridZ, blockX, blockY, blockZ, smem,
                          static_cast<CUstream>(stream), params, extra),
        "cuLaunchKernel");
  if (timing) {
    float ms = 0;
    check(d->cuEventRecord(end, static_cast<CUstream>(stream)), "cuEventRecord");
    check(d->cuEventSynchronize(end), "cuEventSynchronize");
    check(d->cuEventElapsedTime(&ms, begin, end), "cuEventElapsedTime");
    d->cuEventDestroy(begin);
    d->cuEventDestroy(end);
    std::lock_guard<std::mutex> lock(s.mutex);
    auto &t = s.times[s.names[static_cast<CUfunction>(function)]];
    ++t.calls;
    t.ms += ms;
  }
}

KV_MGPU void *mgpuStreamCreate() {
  Driver *d = driver();
  CUstream stream = nullptr;
  if (d)
    check(d->cuStreamCreate(&stream, kStreamNonBlocking), "cuStreamCreate");
  return stream;
}

KV_MGPU void mgpuStreamDestroy(void *stream) {
  Driver *d = driver();
  if (d && stream)
    check(d->cuStreamDestroy(static_cast<CUstream>(stream)), "cuStreamDestroy");
}

KV_MGPU void mgpuStreamSynchronize(void *stream) {
  Driver *d = driver();
  if (d)
    check(d->cuStreamSynchronize(static_cast<CUstream>(stream)),
          "cuStreamSynchronize");
}

KV_MGPU void mgpuStreamWaitEvent(void *stream, void *event) {
  Driver *d = driver();
  if (d)
    check(d->cuStreamWaitEvent(static_cast<CUstream>(stream),
                               static_cast<CUevent>(event), 0),
          "cuStreamWaitEvent");
}

KV_MGPU void *mgpuEventCreate() {
  Driver *d = driver();
  CUevent event = nullptr;
  if (d)
    check(d->cuEventCreate(&event, /*CU_EVENT_DISABLE_TIMING=*/2),
          "cuEventCreate");
  return event;
}

KV_MGPU void mgpuEventDestroy(void *event) {
  Driver *d = driver();
  if (d && event)
    check(d->cuEventDestroy(static_cast<CUevent>(event)), "cuEventDestroy");
}

KV_MGPU void mgpuEventSynchronize(void *event) {
  Driver *d = driver();
  if (d)
    check(d->cuEventSynchronize(static_cast<CUevent>(event)),
          "cuEventSynchronize");
}

KV_MGPU void mgpuEventRecord(void *event, void *stream) {
  Driver *d = driver();
  if (d)
    check(d->cuEventRecord(static_cast<CUevent>(event),
                           static_cast<CUstream>(stream)),
          "cuEventRecord");
}

KV_MGPU void *mgpuMemAlloc(uint64_t bytes, void * /*stream*/,
                           bool hostShared) {
  Driver *d = driver();
  CUdeviceptr ptr = 0;
  if (!d || bytes == 0)
    return nullptr;
  if (hostShared)
    check(d->cuMemAllocManaged(&ptr, bytes, kMemAttachGlobal),
          "cuMemAllocManaged");
  else
    check(d->cuMemAlloc(&ptr, bytes), "cuMemAlloc");
  return reinterpret_cast<void *>(ptr);
}

KV_MGPU void mgpuMemFree(void *ptr, void *stream) {
  Driver *d = driver();
  if (!d || !ptr)
    return;
  // Frees are synchronous: finish the stream's work on the buffer first.
  if (stream)
    check(d->cuStreamSynchronize(static_cast<CUstream>(stream)),
          "cuStreamSynchronize");
  check(d->cuMemFree(reinterpret_cast<CUdeviceptr>(ptr)), "cuMemFree");
}

KV_MGPU void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream) {
  Driver *d = driver();
  if (!d || bytes == 0)
    return;
  // Unified addressing: the driver infers the direction from the pointers.
  check(d->cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst),
                         reinterpret_cast<CUdeviceptr>(src), bytes,
                         static_cast<CUstream>(stream)),
        "cuMemcpyAsync");
}

KV_MGPU void mgpuMemset32(void *dst, unsigned value, size_t count,
                          void *stream) {
  Driver *d = driver();
  if (d)
    check(d->cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(dst), value, count,
                              static_cast<CUstream>(stream)),
          "cuMemsetD32Async");
}

KV_MGPU void mgpuMemset16(void *dst, unsigned short value, size_t count,
                          void *stream) {
  Driver *d = driver();
  if (d)
    check(d->cuMemsetD16Async(reinterpret_cast<CUdeviceptr>(dst), value, count,
                              static_cast<CUstream>(stream)),
          "cuMemsetD16Async");
}

KV_MGPU void mgpuSetDefaultDevice(int32_t device) {
  if (device != 0)
    record("kvmerge's CUDA runtime only uses device 0");
}

#undef KV_MGPU

//===----------------------------------------------------------------------===//
// C++ API
//===----------------------------------------------------------------------===//

namespace kvmerge::runtime::cudadriver {

const InitStatus &initialize() {
  State &s = state();
  std::call_once(s.once, [&] { doInitialize(s); });
  return s.init;
}

std::string chip() { return state().driver.chip; }
std::string deviceName() { return state().driver.name; }

std::string takeError() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::string message = std::move(s.firstError);
  s.firstError.clear();
  return message;
}

void setKernelTiming(bool enabled) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.timing = enabled;
}

std::string kernelTimes() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.formatTimes();
}

void resetKernelTimes() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.times.clear();
}

std::vector<Symbol> symbols() {
#define KV_SYMBOL(name) {#name, reinterpret_cast<void *>(&name)}
  return {KV_SYMBOL(mgpuModuleLoad),       KV_SYMBOL(mgpuModuleLoadJIT),
          KV_SYMBOL(mgpuModuleUnload),     KV_SYMBOL(mgpuModuleGetFunction),
          KV_SYMBOL(mgpuLaunchKernel),     KV_SYMBOL(mgpuStreamCreate),
          KV_SYMBOL(mgpuStreamDestroy),    KV_SYMBOL(mgpuStreamSynchronize),
          KV_SYMBOL(mgpuStreamWaitEvent),  KV_SYMBOL(mgpuEventCreate),
          KV_SYMBOL(mgpuEventDestroy),     KV_SYMBOL(mgpuEventSynchronize),
          KV_SYMBOL(mgpuEventRecord),      KV_SYMBOL(mgpuMemAlloc),
          KV_SYMBOL(mgpuMemFree),          KV_SYMBOL(mgpuMemcpy),
          KV_SYMBOL(mgpuMemset32),         KV_SYMBOL(mgpuMemset16),
          KV_SYMBOL(mgpuSetDefaultDevice)};
#undef KV_SYMBOL
}

} // namespace kvmerge::runtime::cudadriver
