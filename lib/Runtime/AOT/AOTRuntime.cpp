//===- AOTRuntime.cpp - the C ABI of an ahead-of-time artifact ------------===//
//
// include/kvmerge-c/AOT.h, implemented on what `kvmerge-aot-export-abi`
// emits into the artifact's host code (docs/aot.md):
//
//   __kvmerge_aot_manifest  text: the target and every function's signature
//   __kvmerge_aot_entries   one packed entry point per function, in manifest
//                           order: void entry(void **args), args[i] points
//                           to argument i (for a memref, to the pointer to
//                           its descriptor), as mlir::ExecutionEngine packs
//
// Linked statically (libKVMergeAOTRuntime.a) into every artifact together
// with CudaDriver.cpp (mgpu*) and MemrefCopy.cpp (memrefCopy). Plain C++17:
// no LLVM, no MLIR.
//
//===----------------------------------------------------------------------===//

#include "kvmerge-c/AOT.h"

#include "kvmerge/Runtime/CudaDriver.h"
#include "kvmerge/Runtime/MemrefCopy.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#define KV_EXPORT extern "C" __attribute__((visibility("default")))

// Emitted by kvmerge-aot-export-abi into the artifact's host code.
extern "C" const char __kvmerge_aot_manifest[];
extern "C" void (*const __kvmerge_aot_entries[])(void **);

// What memref.copy of strided memrefs calls (hidden: not exported).
extern "C" __attribute__((visibility("hidden"))) void
memrefCopy(int64_t elementSize, void *src, void *dst) {
  kvmerge::runtime::memrefCopy(
      elementSize, static_cast<kvmerge::runtime::UnrankedMemref *>(src),
      static_cast<kvmerge::runtime::UnrankedMemref *>(dst));
}

namespace {

namespace cudadriver = kvmerge::runtime::cudadriver;

thread_local std::string lastError;
thread_local std::string lastText;

int32_t fail(int32_t status, std::string message) {
  lastError = std::move(message);
  return status;
}

struct Value {
  std::string type;
  int32_t dtype = 0;
  bool isTensor = true;
  std::vector<int64_t> shape;
};

struct Function {
  std::string name;
  std::vector<Value> inputs, results;
  // The C view (pointers into the vectors above; built once).
  std::vector<kvmerge_aot_value> cInputs, cResults;
  kvmerge_aot_function c{};
};

struct Manifest {
  std::string error; // non-empty: malformed
  std::string target;
  bool cuda = false;
  std::string chip;
  std::vector<std::unique_ptr<Function>> functions;
};

int32_t dtypeFromName(const std::string &name) {
  static const char *names[] = {"", "f16", "bf16", "f32", "f64",
                                "i8", "i32", "i64"};
  for (int32_t i = 1; i < 8; ++i)
    if (name == names[i])
      return i;
  return 0;
}

const char *dtypeName(int32_t dtype) {
  static const char *names[] = {"?", "f16", "bf16", "f32", "f64",
                                "i8", "i32", "i64"};
  return dtype >= 1 && dtype <= 7 ? names[dtype] : "unknown dtype";
}

size_t dtypeSize(int32_t dtype) {
  static const size_t sizes[] = {0, 2, 2, 4, 8, 1, 4, 8};
  return dtype >= 1 && dtype <= 7 ? sizes[dtype] : 0;
}

/// Parses the manifest (format: lib/AOT/ExportABI.cpp).
void parse(Manifest &m) {
  std::istringstream in(__kvmerge_aot_manifest);
  std::string line;
  auto bad = [&](const std::string &why) {
    m.error = "malformed kvmerge-aot manifest (" + why + ")";
  };
  if (!std::getline(in, line) || line != "kvmerge-aot-abi 1")
    return bad("expected 'kvmerge-aot-abi 1', got '" + line + "'");
  if (!std::getline(in, line) || line.rfind("target ", 0) != 0)
    return bad("no target line");
  m.target = line.substr(7);
  {
    std::istringstream t(m.target);
    std::string kind;
    t >> kind >> m.chip;
    m.cuda = kind == "cuda";
  }
  while (std::getline(in, line)) {
    if (line == "end")
      break;
    std::istringstream words(line);
    std::string keyword, name;
    int64_t numInputs = -1, numResults = -1;
    words >> keyword >> name >> numInputs >> numResults;
    if (keyword != "function" || name.empty() || numInputs < 0 ||
        numResults < 0 || numInputs > 4096 || numResults > 4096)
      return bad("bad function line '" + line + "'");
    auto f = std::make_unique<Function>();
    f->name = name;
    for (int64_t i = 0; i < numInputs + numResults; ++i) {
      if (!std::getline(in, line))
        return bad("truncated signature of '" + name + "'");
      std::istringstream v(line);
      std::string word, role, kind, dtype;
      int64_t rank = -1;
      v >> word >> role >> kind >> dtype >> rank;
      bool isInput = i < numInputs;
      Value value;
      value.dtype = dtypeFromName(dtype);
      value.isTensor = kind == "tensor";
      if (word != "value" || role != (isInput ? "in" : "out") ||
          (kind != "tensor" && kind != "scalar") || !value.dtype ||
          rank < 0 || rank > 64 || (!value.isTensor && rank != 0))
        return bad("bad value line '" + line + "'");
      for (int64_t d = 0; d < rank; ++d) {
        int64_t size = -2;
        v >> size;
        if (size < KVMERGE_AOT_DYNAMIC || (!isInput && size < 0))
          return bad("bad shape in '" + line + "'");
        value.shape.push_back(size);
      }
      v >> value.type;
      if (value.type.empty())
        return bad("no type in '" + line + "'");
      (isInput ? f->inputs : f->results).push_back(std::move(value));
    }
    m.functions.push_back(std::move(f));
  }
  if (line != "end")
    return bad("no end line");
  for (auto &f : m.functions) {
    auto view = [](std::vector<Value> &values,
                   std::vector<kvmerge_aot_value> &out) {
      for (Value &v : values)
        out.push_back({v.type.c_str(), v.dtype, v.isTensor ? 1 : 0,
                       static_cast<int32_t>(v.shape.size()), v.shape.data()});
    };
    view(f->inputs, f->cInputs);
    view(f->results, f->cResults);
    f->c = {f->name.c_str(), static_cast<int32_t>(f->inputs.size()),
            static_cast<int32_t>(f->results.size()), f->cInputs.data(),
            f->cResults.data()};
  }
}

Manifest &manifest() {
  static Manifest m;
  static std::once_flag once;
  std::call_once(once, [] { parse(m); });
  return m;
}

/// Device state of a CUDA artifact.
struct Device {
  std::once_flag once;
  int32_t status = KVMERGE_AOT_OK;
  std::string error;
  std::string description;
  std::mutex callMutex;
};

Device &device() {
  static Device d;
  return d;
}

/// "sm_90a" -> "90"; "sm_90" -> "90".
std::string chipNumber(const std::string &chip) {
  std::string digits;
  for (char c : chip)
    if (c >= '0' && c <= '9')
      digits += c;
  return digits;
}

int32_t initializeDevice() {
  Manifest &m = manifest();
  if (!m.error.empty())
    return fail(KVMERGE_AOT_BAD_ARTIFACT, m.error);
  if (!m.cuda)
    return KVMERGE_AOT_OK;
  Device &d = device();
  std::call_once(d.once, [&] {
    const cudadriver::InitStatus &init = cudadriver::initialize();
    if (!init.error.empty()) {
      d.status = KVMERGE_AOT_DEVICE_ERROR;
      d.error = init.error;
      if (init.noDriver)
        d.error += "; this artifact (target " + m.target +
                   ") needs an NVIDIA GPU with its driver";
      return;
    }
    std::string deviceChip = cudadriver::chip();
    d.description = cudadriver::deviceName() + " (" + deviceChip + ")";
    // The kernels were loaded by the host code's global constructors, when
    // the artifact was loaded; their errors are waiting.
    std::string loadError = cudadriver::takeError();
    if (!loadError.empty()) {
      d.status = KVMERGE_AOT_DEVICE_ERROR;
      d.error = "the artifact's GPU kernels (target " + m.target +
                ") did not load on device 0, " + d.description + ": " +
                loadError;
      if (chipNumber(deviceChip) != chipNumber(m.chip))
        d.error += "; rebuild it with --chip=" + deviceChip;
    }
  });
  if (d.status != KVMERGE_AOT_OK)
    return fail(d.status, d.error);
  return KVMERGE_AOT_OK;
}

std::string shapeString(int32_t dtype, int32_t rank, const int64_t *shape) {
  std::string s = "tensor<";
  for (int32_t i = 0; i < rank; ++i)
    s += (shape[i] == KVMERGE_AOT_DYNAMIC ? std::string("?")
                                          : std::to_string(shape[i])) +
         "x";
  return s + dtypeName(dtype) + ">";
}

/// Checks one caller buffer against a value of the signature; "" if fine.
std::string checkBuffer(const Value &spec, const kvmerge_aot_tensor &t,
                        bool isResult) {
  if (t.dtype != spec.dtype)
    return std::string("has dtype ") + dtypeName(t.dtype) + ", expected " +
           dtypeName(spec.dtype) + " (" + spec.type + ")";
  if (!spec.isTensor) {
    if (t.rank != 0)
      return "must be a scalar " + spec.type + " (rank 0), got rank " +
             std::to_string(t.rank);
    if (!t.data)
      return "has no data";
    return "";
  }
  if (t.rank < 0 || t.rank > 64 || (t.rank > 0 && !t.shape))
    return "has an invalid rank or no shape";
  if (static_cast<size_t>(t.rank) != spec.shape.size())
    return "must be " + spec.type + ", got " +
           shapeString(t.dtype, t.rank, t.shape);
  int64_t elements = 1;
  for (int32_t i = 0; i < t.rank; ++i) {
    int64_t size = t.shape[i];
    bool matches = spec.shape[i] == KVMERGE_AOT_DYNAMIC
                       ? size >= 0
                       : size == spec.shape[i];
    if (!matches || (isResult && spec.shape[i] == KVMERGE_AOT_DYNAMIC))
      return "must be " + spec.type + ", got " +
             shapeString(t.dtype, t.rank, t.shape);
    if (size != 0 && elements > std::numeric_limits<int64_t>::max() / size)
      return "has too many elements";
    elements *= size;
  }
  if (elements != 0 && !t.data)
    return "has no data";
  if (elements > 0 && static_cast<uint64_t>(elements) >
                          std::numeric_limits<uint64_t>::max() /
                              dtypeSize(t.dtype))
    return "has too many bytes";
  return "";
}

/// The memref descriptor of a dense row-major buffer, as 64-bit words:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}.
std::vector<int64_t> descriptor(const kvmerge_aot_tensor &t) {
  std::vector<int64_t> words;
  auto pointer = static_cast<int64_t>(reinterpret_cast<intptr_t>(t.data));
  words.push_back(pointer);
  words.push_back(pointer);
  words.push_back(0);
  for (int32_t i = 0; i < t.rank; ++i)
    words.push_back(t.shape[i]);
  std::vector<int64_t> strides(t.rank, 1);
  for (int32_t d = t.rank - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * t.shape[d + 1];
  words.insert(words.end(), strides.begin(), strides.end());
  return words;
}

} // namespace

KV_EXPORT int32_t kvmerge_aot_abi_version(void) {
  return KVMERGE_AOT_ABI_VERSION;
}

KV_EXPORT const char *kvmerge_aot_target(void) {
  return manifest().target.c_str();
}

KV_EXPORT int32_t kvmerge_aot_num_functions(void) {
  Manifest &m = manifest();
  if (!m.error.empty()) {
    fail(KVMERGE_AOT_BAD_ARTIFACT, m.error);
    return 0;
  }
  return static_cast<int32_t>(m.functions.size());
}

KV_EXPORT const kvmerge_aot_function *kvmerge_aot_function_at(int32_t index) {
  Manifest &m = manifest();
  if (!m.error.empty()) {
    fail(KVMERGE_AOT_BAD_ARTIFACT, m.error);
    return nullptr;
  }
  if (index < 0 || static_cast<size_t>(index) >= m.functions.size()) {
    fail(KVMERGE_AOT_INVALID_ARGUMENT,
         "function index " + std::to_string(index) + " is out of range (" +
             std::to_string(m.functions.size()) + " functions)");
    return nullptr;
  }
  return &m.functions[index]->c;
}

static int32_t findFunction(const char *name) {
  Manifest &m = manifest();
  if (!m.error.empty())
    return fail(KVMERGE_AOT_BAD_ARTIFACT, m.error), -1;
  if (!name)
    return fail(KVMERGE_AOT_INVALID_ARGUMENT, "no function name given"), -1;
  std::string available;
  for (size_t i = 0; i < m.functions.size(); ++i) {
    if (m.functions[i]->name == name)
      return static_cast<int32_t>(i);
    available += (available.empty() ? "" : ", ") + m.functions[i]->name;
  }
  fail(KVMERGE_AOT_INVALID_ARGUMENT,
       std::string("function '") + name + "' is not in this artifact" +
           (available.empty() ? " (it has none)"
                              : " (available: " + available + ")"));
  return -1;
}

KV_EXPORT const kvmerge_aot_function *kvmerge_aot_lookup(const char *name) {
  int32_t index = findFunction(name);
  return index < 0 ? nullptr : &manifest().functions[index]->c;
}

KV_EXPORT int32_t kvmerge_aot_initialize(void) { return initializeDevice(); }

KV_EXPORT const char *kvmerge_aot_device(void) {
  Manifest &m = manifest();
  if (!m.error.empty())
    return "";
  if (!m.cuda)
    return "cpu";
  if (initializeDevice() != KVMERGE_AOT_OK)
    return "";
  return device().description.c_str();
}

KV_EXPORT int32_t kvmerge_aot_call(const char *name,
                                   const kvmerge_aot_tensor *inputs,
                                   int32_t numInputs,
                                   const kvmerge_aot_tensor *outputs,
                                   int32_t numOutputs) {
  lastError.clear();
  int32_t index = findFunction(name);
  if (index < 0)
    return manifest().error.empty() ? KVMERGE_AOT_INVALID_ARGUMENT
                                    : KVMERGE_AOT_BAD_ARTIFACT;
  Manifest &m = manifest();
  const Function &f = *m.functions[index];
  if (numInputs != static_cast<int32_t>(f.inputs.size()) ||
      (numInputs > 0 && !inputs))
    return fail(KVMERGE_AOT_INVALID_ARGUMENT,
                "function '" + f.name + "' takes " +
                    std::to_string(f.inputs.size()) + " input(s), got " +
                    std::to_string(numInputs));
  if (numOutputs != static_cast<int32_t>(f.results.size()) ||
      (numOutputs > 0 && !outputs))
    return fail(KVMERGE_AOT_INVALID_ARGUMENT,
                "function '" + f.name + "' has " +
                    std::to_string(f.results.size()) + " result(s), got " +
                    std::to_string(numOutputs) + " output buffer(s)");
  for (int32_t i = 0; i < numInputs; ++i) {
    std::string why = checkBuffer(f.inputs[i], inputs[i], false);
    if (!why.empty())
      return fail(KVMERGE_AOT_INVALID_ARGUMENT, "input " + std::to_string(i) +
                                                    " of '" + f.name + "' " +
                                                    why);
  }
  for (int32_t i = 0; i < numOutputs; ++i) {
    std::string why = checkBuffer(f.results[i], outputs[i], true);
    if (!why.empty())
      return fail(KVMERGE_AOT_INVALID_ARGUMENT, "output " +
                                                    std::to_string(i) +
                                                    " of '" + f.name + "' " +
                                                    why);
  }
  if (int32_t status = initializeDevice())
    return status;

  // Descriptors first (their addresses must stay put), then the pointers to
  // them, then the packed argument array.
  std::vector<std::vector<int64_t>> descriptors;
  for (int32_t i = 0; i < numInputs; ++i)
    if (f.inputs[i].isTensor)
      descriptors.push_back(descriptor(inputs[i]));
  for (int32_t i = 0; i < numOutputs; ++i)
    descriptors.push_back(descriptor(outputs[i]));
  std::vector<void *> descriptorPointers;
  for (std::vector<int64_t> &d : descriptors)
    descriptorPointers.push_back(d.data());
  std::vector<void *> packed;
  size_t next = 0;
  for (int32_t i = 0; i < numInputs; ++i)
    packed.push_back(f.inputs[i].isTensor ? &descriptorPointers[next++]
                                          : inputs[i].data);
  for (int32_t i = 0; i < numOutputs; ++i)
    packed.push_back(&descriptorPointers[next++]);

  if (!m.cuda) {
    __kvmerge_aot_entries[index](packed.data());
    return KVMERGE_AOT_OK;
  }
  Device &d = device();
  std::lock_guard<std::mutex> lock(d.callMutex);
  cudadriver::takeError(); // nothing stale is blamed on this call
  __kvmerge_aot_entries[index](packed.data());
  std::string error = cudadriver::takeError();
  if (!error.empty())
    return fail(KVMERGE_AOT_DEVICE_ERROR,
                "CUDA error in '" + f.name + "': " + error);
  return KVMERGE_AOT_OK;
}

KV_EXPORT const char *kvmerge_aot_last_error(void) {
  return lastError.c_str();
}

KV_EXPORT void kvmerge_aot_set_kernel_timing(int32_t enabled) {
  if (manifest().cuda)
    cudadriver::setKernelTiming(enabled != 0);
}

KV_EXPORT const char *kvmerge_aot_kernel_times(void) {
  lastText = manifest().cuda ? cudadriver::kernelTimes() : std::string();
  return lastText.c_str();
}

KV_EXPORT void kvmerge_aot_reset_kernel_times(void) {
  if (manifest().cuda)
    cudadriver::resetKernelTimes();
}
