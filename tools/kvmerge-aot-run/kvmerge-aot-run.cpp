//===- kvmerge-aot-run.cpp - run an ahead-of-time artifact on .npy files --===//
//
//   kvmerge-aot-run libfoo.so --list
//   kvmerge-aot-run libfoo.so --function=compress --input=@k.npy
//       --input=@v.npy --input=@a.npy --output=@keys.npy ... [--repeat=N]
//       [--kernel-times]
//
// Plain C++17 and libdl: no LLVM, no MLIR (docs/aot.md). The artifact is
// opened with dlopen and called through its C ABI (kvmerge-c/AOT.h). Every
// failure is one message on stderr and exit code 1; outputs are written to
// temporaries and renamed only when every one of them was written.
//
//===----------------------------------------------------------------------===//

#include "kvmerge-c/AOT.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

struct Failure {
  std::string message;
};

[[noreturn]] void fail(const std::string &message) { throw Failure{message}; }

//===----------------------------------------------------------------------===//
// .npy (format 1.0/2.0/3.0, C order, little-endian; bf16 as '<V2')
//===----------------------------------------------------------------------===//

struct Tensor {
  int32_t dtype = 0;
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;
};

size_t dtypeSize(int32_t dtype) {
  static const size_t sizes[] = {0, 2, 2, 4, 8, 1, 4, 8};
  return dtype >= 1 && dtype <= 7 ? sizes[dtype] : 0;
}

const char *npyDescr(int32_t dtype) {
  static const char *descrs[] = {"", "<f2", "<V2", "<f4", "<f8",
                                 "|i1", "<i4", "<i8"};
  return descrs[dtype];
}

/// The dtype of an .npy descr; `expected` resolves the void '<V2' (bf16).
int32_t dtypeOfDescr(const std::string &descr, int32_t expected) {
  for (int32_t d = 1; d <= 7; ++d)
    if (descr == npyDescr(d))
      return d;
  if (descr == "|V2" || descr == "<V2")
    return KVMERGE_AOT_BF16;
  if (descr == "<i1" || descr == "i1")
    return KVMERGE_AOT_I8;
  (void)expected;
  return 0;
}

/// Reads `path` fully (regular files only, so /dev/zero cannot hang us).
std::string readFile(const std::string &path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    fail("cannot read '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail("'" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail("cannot read '" + path + "': " + std::strerror(errno));
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  in.read(&bytes[0], st.st_size);
  if (in.gcount() != st.st_size)
    fail("cannot read '" + path + "': short read");
  return bytes;
}

/// The value of `key` in a .npy header dict literal, as raw text.
std::string headerValue(const std::string &header, const std::string &key,
                        const std::string &path) {
  for (char quote : {'\'', '"'}) {
    std::string needle = std::string(1, quote) + key + quote;
    size_t at = header.find(needle);
    if (at == std::string::npos)
      continue;
    at = header.find(':', at + needle.size());
    if (at == std::string::npos)
      break;
    ++at;
    while (at < header.size() && header[at] == ' ')
      ++at;
    size_t end = at;
    if (at < header.size() && (header[at] == '\'' || header[at] == '"')) {
      end = header.find(header[at], at + 1);
      if (end == std::string::npos)
        break;
      return header.substr(at + 1, end - at - 1);
    }
    if (at < header.size() && header[at] == '(') {
      end = header.find(')', at);
      if (end == std::string::npos)
        break;
      return header.substr(at, end - at + 1);
    }
    end = header.find_first_of(",}", at);
    if (end == std::string::npos)
      break;
    return header.substr(at, end - at);
  }
  fail("'" + path + "' is not a valid .npy file (no '" + key + "' in its header)");
}

Tensor readNpy(const std::string &path, int32_t expectedDtype) {
  std::string bytes = readFile(path);
  auto bad = [&](const std::string &why) -> Failure {
    return Failure{"'" + path + "' is not a valid .npy file (" + why + ")"};
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw bad("bad magic");
  unsigned major = static_cast<unsigned char>(bytes[6]);
  size_t headerLength, headerStart;
  if (major == 1) {
    headerLength = static_cast<unsigned char>(bytes[8]) |
                   static_cast<unsigned char>(bytes[9]) << 8;
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12)
      throw bad("truncated header");
    headerLength = 0;
    for (int i = 3; i >= 0; --i)
      headerLength = headerLength << 8 | static_cast<unsigned char>(bytes[8 + i]);
    headerStart = 12;
  } else {
    throw bad("unsupported version " + std::to_string(major));
  }
  if (headerLength > bytes.size() - headerStart)
    throw bad("truncated header");
  std::string header = bytes.substr(headerStart, headerLength);
  std::string descr = headerValue(header, "descr", path);
  std::string fortran = headerValue(header, "fortran_order", path);
  std::string shapeText = headerValue(header, "shape", path);
  if (fortran.find("True") != std::string::npos)
    throw bad("fortran_order=True is not supported");
  Tensor t;
  t.dtype = dtypeOfDescr(descr, expectedDtype);
  if (!t.dtype)
    throw bad("unsupported dtype '" + descr + "'");
  if (shapeText.size() < 2 || shapeText.front() != '(' ||
      shapeText.back() != ')')
    throw bad("bad shape '" + shapeText + "'");
  std::string inner = shapeText.substr(1, shapeText.size() - 2);
  std::replace(inner.begin(), inner.end(), ',', ' ');
  std::istringstream dims(inner);
  std::string dim;
  uint64_t elements = 1;
  while (dims >> dim) {
    char *end = nullptr;
    errno = 0;
    long long size = std::strtoll(dim.c_str(), &end, 10);
    if (errno || *end || size < 0)
      throw bad("bad shape '" + shapeText + "'");
    if (size != 0 && elements > std::numeric_limits<uint64_t>::max() /
                                    static_cast<uint64_t>(size))
      throw bad("shape overflows");
    elements *= static_cast<uint64_t>(size);
    t.shape.push_back(size);
  }
  size_t dataStart = headerStart + headerLength;
  uint64_t size = elements * dtypeSize(t.dtype);
  if (elements != 0 && size / dtypeSize(t.dtype) != elements)
    throw bad("shape overflows");
  if (bytes.size() - dataStart != size)
    throw bad("it holds " + std::to_string(bytes.size() - dataStart) +
              " data bytes, its header says " + std::to_string(size));
  t.data.assign(bytes.begin() + dataStart, bytes.end());
  return t;
}

void writeNpy(const std::string &path, const Tensor &t) {
  std::string shape = "(";
  for (int64_t d : t.shape)
    shape += std::to_string(d) + ",";
  if (t.shape.size() > 1)
    shape.pop_back();
  shape += ")";
  std::string header = std::string("{'descr': '") + npyDescr(t.dtype) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out)
    fail("cannot write '" + path + "': " + std::strerror(errno));
  out.write("\x93NUMPY\x01\x00", 8);
  unsigned char length[2] = {static_cast<unsigned char>(header.size() & 0xff),
                             static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char *>(length), 2);
  out << header;
  out.write(reinterpret_cast<const char *>(t.data.data()), t.data.size());
  out.close();
  if (!out)
    fail("cannot write '" + path + "'");
}

//===----------------------------------------------------------------------===//
// The artifact
//===----------------------------------------------------------------------===//

struct Artifact {
  void *handle = nullptr;
  int32_t (*abiVersion)(void);
  const char *(*target)(void);
  int32_t (*numFunctions)(void);
  const kvmerge_aot_function *(*functionAt)(int32_t);
  const kvmerge_aot_function *(*lookup)(const char *);
  int32_t (*initialize)(void);
  const char *(*device)(void);
  int32_t (*call)(const char *, const kvmerge_aot_tensor *, int32_t,
                  const kvmerge_aot_tensor *, int32_t);
  const char *(*lastError)(void);
  void (*setKernelTiming)(int32_t);
  const char *(*kernelTimes)(void);
};

template <typename F>
void resolve(Artifact &a, F &fn, const char *name, const std::string &path) {
  fn = reinterpret_cast<F>(dlsym(a.handle, name));
  if (!fn)
    fail("'" + path + "' is not a kvmerge-aot artifact (no " + name + ")");
}

Artifact open(const std::string &path) {
  Artifact a;
  // A bare name would be searched in the library path, not here.
  std::string name = path.find('/') == std::string::npos ? "./" + path : path;
  a.handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!a.handle) {
    const char *why = dlerror();
    fail("cannot load '" + path + "': " + (why ? why : "unknown error"));
  }
  resolve(a, a.abiVersion, "kvmerge_aot_abi_version", path);
  resolve(a, a.target, "kvmerge_aot_target", path);
  resolve(a, a.numFunctions, "kvmerge_aot_num_functions", path);
  resolve(a, a.functionAt, "kvmerge_aot_function_at", path);
  resolve(a, a.lookup, "kvmerge_aot_lookup", path);
  resolve(a, a.initialize, "kvmerge_aot_initialize", path);
  resolve(a, a.device, "kvmerge_aot_device", path);
  resolve(a, a.call, "kvmerge_aot_call", path);
  resolve(a, a.lastError, "kvmerge_aot_last_error", path);
  resolve(a, a.setKernelTiming, "kvmerge_aot_set_kernel_timing", path);
  resolve(a, a.kernelTimes, "kvmerge_aot_kernel_times", path);
  if (a.abiVersion() != KVMERGE_AOT_ABI_VERSION)
    fail("'" + path + "' has ABI version " + std::to_string(a.abiVersion()) +
         ", this runner speaks " + std::to_string(KVMERGE_AOT_ABI_VERSION));
  return a;
}

std::string signature(const kvmerge_aot_function &f) {
  std::string s = f.name + std::string("(");
  for (int32_t i = 0; i < f.num_inputs; ++i)
    s += (i ? ", " : "") + std::string(f.inputs[i].type);
  s += ") -> (";
  for (int32_t i = 0; i < f.num_results; ++i)
    s += (i ? ", " : "") + std::string(f.results[i].type);
  return s + ")";
}

/// A scalar input `TYPE=VALUE` (e.g. f32=0.5, i32=3).
Tensor parseScalar(const std::string &text, const kvmerge_aot_value &spec) {
  size_t eq = text.find('=');
  std::string type = text.substr(0, eq), value = text.substr(eq + 1);
  if (eq == std::string::npos || type != spec.type)
    fail("scalar input '" + text + "' must be written " + spec.type + "=VALUE");
  Tensor t;
  t.dtype = spec.dtype;
  t.data.resize(dtypeSize(spec.dtype));
  char *end = nullptr;
  errno = 0;
  if (spec.dtype == KVMERGE_AOT_F32 || spec.dtype == KVMERGE_AOT_F64) {
    double v = std::strtod(value.c_str(), &end);
    if (errno || *end || value.empty())
      fail("bad value in scalar input '" + text + "'");
    if (spec.dtype == KVMERGE_AOT_F32) {
      float f = static_cast<float>(v);
      std::memcpy(t.data.data(), &f, 4);
    } else {
      std::memcpy(t.data.data(), &v, 8);
    }
  } else if (spec.dtype == KVMERGE_AOT_I8 || spec.dtype == KVMERGE_AOT_I32 ||
             spec.dtype == KVMERGE_AOT_I64) {
    long long v = std::strtoll(value.c_str(), &end, 10);
    size_t bytes = dtypeSize(spec.dtype);
    long long limit = bytes == 8 ? std::numeric_limits<long long>::max()
                                 : (1LL << (8 * bytes - 1)) - 1;
    if (errno || *end || value.empty() || v > limit || v < -limit - 1)
      fail("bad value in scalar input '" + text + "'");
    std::memcpy(t.data.data(), &v, bytes); // little-endian
  } else {
    fail("scalar input '" + text + "': " + spec.type +
         " scalars cannot be given on the command line");
  }
  return t;
}

int usage() {
  std::fputs(
      "usage: kvmerge-aot-run ARTIFACT.so --list\n"
      "       kvmerge-aot-run ARTIFACT.so [--function=NAME] --input=@IN.npy "
      "... [--output=@OUT.npy ...]\n"
      "                       [--repeat=N] [--kernel-times]\n"
      "Runs a function of an artifact built by kvmerge-aot (docs/aot.md).\n"
      "  --input=@FILE.npy   one per argument, in order (TYPE=VALUE for a "
      "scalar argument)\n"
      "  --output=@FILE.npy  one per result, in order; results without one "
      "are summarized\n"
      "  --repeat=N          time N more calls after the first; prints "
      "median_ms and min_ms\n"
      "  --kernel-times      CUDA artifacts: print the time of every kernel "
      "(CUDA events)\n",
      stdout);
  return 0;
}

int run(int argc, char **argv) {
  std::string path, functionName;
  std::vector<std::string> inputFlags, outputFlags;
  bool list = false, kernelTimes = false;
  long repeat = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char *prefix) {
      return arg.substr(std::strlen(prefix));
    };
    if (arg == "--help" || arg == "-h")
      return usage();
    if (arg == "--list")
      list = true;
    else if (arg == "--kernel-times")
      kernelTimes = true;
    else if (arg.rfind("--function=", 0) == 0)
      functionName = value("--function=");
    else if (arg.rfind("--input=", 0) == 0)
      inputFlags.push_back(value("--input="));
    else if (arg.rfind("--output=", 0) == 0)
      outputFlags.push_back(value("--output="));
    else if (arg.rfind("--repeat=", 0) == 0) {
      std::string n = value("--repeat=");
      char *end = nullptr;
      errno = 0;
      repeat = std::strtol(n.c_str(), &end, 10);
      if (errno || *end || n.empty() || repeat < 0 || repeat > 100000)
        fail("--repeat must be an integer in [0, 100000], got '" + n + "'");
    } else if (!arg.empty() && arg[0] == '-')
      fail("unknown option '" + arg + "' (see --help)");
    else if (path.empty())
      path = arg;
    else
      fail("more than one artifact given ('" + path + "', '" + arg + "')");
  }
  if (path.empty())
    fail("no artifact given (see --help)");
  Artifact a = open(path);
  int32_t count = a.numFunctions();
  if (count == 0)
    fail(a.lastError());
  if (list) {
    std::printf("target: %s\n", a.target());
    for (int32_t i = 0; i < count; ++i)
      std::printf("%s\n", signature(*a.functionAt(i)).c_str());
    return 0;
  }
  if (functionName.empty()) {
    if (count != 1)
      fail("the artifact has " + std::to_string(count) +
           " functions: choose one with --function (see --list)");
    functionName = a.functionAt(0)->name;
  }
  const kvmerge_aot_function *f = a.lookup(functionName.c_str());
  if (!f)
    fail(a.lastError());
  if (static_cast<int32_t>(inputFlags.size()) != f->num_inputs)
    fail("'" + functionName + "' takes " + std::to_string(f->num_inputs) +
         " input(s), got " + std::to_string(inputFlags.size()) + ": " +
         signature(*f));
  if (static_cast<int32_t>(outputFlags.size()) > f->num_results)
    fail("'" + functionName + "' has " + std::to_string(f->num_results) +
         " result(s), got " + std::to_string(outputFlags.size()) +
         " --output flags");
  for (size_t i = 0; i < outputFlags.size(); ++i) {
    if (outputFlags[i].size() < 2 || outputFlags[i][0] != '@')
      fail("--output must be @FILE.npy, got '" + outputFlags[i] + "'");
    for (size_t j = 0; j < i; ++j)
      if (outputFlags[j] == outputFlags[i])
        fail("two results are written to '" + outputFlags[i].substr(1) + "'");
  }

  std::vector<Tensor> inputs(f->num_inputs), outputs(f->num_results);
  std::vector<kvmerge_aot_tensor> inArgs, outArgs;
  for (int32_t i = 0; i < f->num_inputs; ++i) {
    const std::string &flag = inputFlags[i];
    if (!f->inputs[i].is_tensor)
      inputs[i] = parseScalar(flag, f->inputs[i]);
    else if (flag.size() > 1 && flag[0] == '@')
      inputs[i] = readNpy(flag.substr(1), f->inputs[i].dtype);
    else
      fail("input " + std::to_string(i) + " must be @FILE.npy, got '" + flag +
           "'");
    inArgs.push_back({inputs[i].data.data(), inputs[i].dtype,
                      static_cast<int32_t>(inputs[i].shape.size()),
                      inputs[i].shape.data()});
  }
  for (int32_t i = 0; i < f->num_results; ++i) {
    const kvmerge_aot_value &spec = f->results[i];
    Tensor &t = outputs[i];
    t.dtype = spec.dtype;
    t.shape.assign(spec.shape, spec.shape + spec.rank);
    size_t elements = 1;
    for (int64_t d : t.shape)
      elements *= static_cast<size_t>(d);
    t.data.assign(elements * dtypeSize(spec.dtype), 0);
    outArgs.push_back({t.data.data(), t.dtype, spec.rank, t.shape.data()});
  }
  if (kernelTimes)
    a.setKernelTiming(1);
  std::vector<double> ms;
  for (long r = 0; r <= repeat; ++r) {
    auto begin = std::chrono::steady_clock::now();
    if (a.call(f->name, inArgs.data(), f->num_inputs, outArgs.data(),
               f->num_results) != KVMERGE_AOT_OK)
      fail(a.lastError());
    auto end = std::chrono::steady_clock::now();
    if (r > 0)
      ms.push_back(std::chrono::duration<double, std::milli>(end - begin)
                       .count());
  }

  // All outputs or none.
  std::vector<std::string> temporaries;
  try {
    for (size_t i = 0; i < outputFlags.size(); ++i) {
      std::string target = outputFlags[i].substr(1);
      std::string temporary =
          target + ".tmp-" + std::to_string(static_cast<long>(getpid()));
      temporaries.push_back(temporary);
      writeNpy(temporary, outputs[i]);
    }
    for (size_t i = 0; i < outputFlags.size(); ++i)
      if (std::rename(temporaries[i].c_str(), outputFlags[i].substr(1).c_str()))
        fail("cannot write '" + outputFlags[i].substr(1) +
             "': " + std::strerror(errno));
  } catch (const Failure &) {
    for (const std::string &temporary : temporaries)
      std::remove(temporary.c_str());
    throw;
  }
  for (int32_t i = static_cast<int32_t>(outputFlags.size());
       i < f->num_results; ++i)
    std::printf("result[%d]: %s (no --output)\n", i, f->results[i].type);
  if (repeat > 0) {
    std::sort(ms.begin(), ms.end());
    std::printf("calls=%ld median_ms=%.4f min_ms=%.4f device=%s\n", repeat,
                ms[ms.size() / 2], ms.front(), a.device());
  }
  if (kernelTimes)
    std::fputs(a.kernelTimes(), stdout);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const Failure &failure) {
    std::fprintf(stderr, "kvmerge-aot-run: error: %s\n",
                 failure.message.c_str());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "kvmerge-aot-run: error: %s\n", e.what());
    return 1;
  }
}
