//===- kvmerge-run.cpp - run a function of an .mlir module on the CPU -----===//
//
// IREE-style (iree-run-module) driver over kvmerge::runtime::Runner:
//
//   kvmerge-run model.mlir --function=f --input=@a.npy --input=4xf32=1,2,3,4
//               --output=@out.npy --benchmark-repetitions=10
//
// Every failure is one message on stderr and exit code 1; output files are
// written to temporaries and renamed only once everything succeeded.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/HostTensor.h"
#include "kvmerge/Runtime/Npy.h"
#include "kvmerge/Runtime/ParallelFor.h"
#include "kvmerge/Runtime/Runner.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

using namespace llvm;
using namespace kvmerge::runtime;

static cl::OptionCategory runCategory("kvmerge-run options");

static cl::opt<std::string> inputFilename(cl::Positional,
                                          cl::desc("<input .mlir file>"),
                                          cl::init("-"), cl::cat(runCategory));

static cl::opt<std::string> functionName(
    "function",
    cl::desc("Public function to run (default: the module's only runnable "
             "function)"),
    cl::value_desc("name"), cl::cat(runCategory));

static cl::list<std::string> inputFlags(
    "input",
    cl::desc("One per function argument, in order: @FILE.npy, or an inline "
             "tensor such as 4x8xf32=1,2,3,... (all values), 4x8xf32=1 "
             "(splat), 2x2xf32=[1 2][3 4], f32=0.5 (scalar), 4xf32 (zeros). "
             "Types: f16 bf16 f32 f64 i8 i32 i64"),
    cl::value_desc("value"), cl::cat(runCategory));

static cl::list<std::string> outputFlags(
    "output",
    cl::desc("One per result, in order: @FILE.npy writes the result to a "
             ".npy file, - prints it. Results without an --output are "
             "printed as `result[i]: 2x3xf32=[1 2 3][4 5 6]`"),
    cl::value_desc("@file.npy|-"), cl::cat(runCategory));

static cl::opt<std::string> deviceName(
    "device",
    cl::desc("Device to run on: cpu, or cuda (NVIDIA GPU through the "
             "CUDA driver, opened at run time)"),
    cl::init("cpu"), cl::cat(runCategory));

static cl::opt<unsigned> benchmarkRepetitions(
    "benchmark-repetitions",
    cl::desc("Time N runs (at most 1000000) after one warm-up run and print "
             "median_ms, min_ms and GB/s (bytes = all input and output "
             "buffers, per median run)"),
    cl::value_desc("N"), cl::init(0), cl::cat(runCategory));

static cl::opt<unsigned> optLevel("opt-level",
                                  cl::desc("JIT optimization level (0-3)"),
                                  cl::init(3), cl::cat(runCategory));

static cl::opt<std::string> pipelineOptions(
    "pipeline-options",
    cl::desc("Options of the CPU pipeline --kvmerge-lower-to-llvm, e.g. "
             "\"fuse-merge=false\""),
    cl::init(""), cl::cat(runCategory));

// --threads=N: libLLVM already registers a hidden "threads" option of its
// own, so main() takes this one out of argv before cl:: parses the rest.
static std::optional<std::string> threadsFlag;

static cl::opt<int64_t> printMaxElements(
    "print-max-elements",
    cl::desc("Print at most this many elements of each printed result"),
    cl::init(1024), cl::cat(runCategory));

static int fail(Error err) {
  WithColor::error(errs(), "kvmerge-run") << toString(std::move(err)) << "\n";
  return 1;
}

static Expected<std::string> chooseFunction(const Runner &runner) {
  if (!functionName.empty())
    return functionName;
  std::vector<std::string> runnable;
  for (const FunctionSignature &f : runner.getFunctions())
    if (f.unsupportedReason.empty())
      runnable.push_back(f.name);
  if (runnable.size() == 1)
    return runnable.front();
  if (runnable.empty())
    return createStringError("'" + inputFilename +
                             "' has no runnable public function");
  std::string names;
  for (const std::string &name : runnable)
    names += (names.empty() ? "" : ", ") + name;
  return createStringError("--function is required: '" + inputFilename +
                           "' has several public functions (" + names + ")");
}

/// Output files are written to temporaries and only renamed over their
/// final names after every one of them was written. Publishing several files
/// cannot be one atomic step, so an existing file is first kept as a backup
/// (hard link, or copy) and every published output is rolled back when a
/// later one fails: the outputs are committed all or none.
struct PendingOutput {
  std::string path;
  sys::fs::TempFile temp;
  /// The previous contents of `path` while publishing ("" when none).
  std::string backup;
  bool published = false;
};

/// Checks the --output paths before anything runs: no path given twice
/// (also through another spelling or a link), none an existing directory or
/// other non-regular file.
static Error checkOutputPaths() {
  struct Seen {
    std::string normalized;
    std::optional<sys::fs::UniqueID> id;
    size_t index;
  };
  std::vector<Seen> seen;
  for (auto [i, flag] : llvm::enumerate(outputFlags)) {
    if (flag == "-")
      continue;
    StringRef path = StringRef(flag).drop_front();
    sys::fs::file_status status;
    std::optional<sys::fs::UniqueID> id;
    if (!sys::fs::status(path, status) && sys::fs::exists(status)) {
      if (sys::fs::is_directory(status))
        return createStringError("--output " + Twine(i) + ": '" + path +
                                 "' is a directory");
      if (!sys::fs::is_regular_file(status))
        return createStringError("--output " + Twine(i) + ": '" + path +
                                 "' exists and is not a regular file");
      id = status.getUniqueID();
    }
    SmallString<256> normalized(path);
    if (std::error_code ec = sys::fs::make_absolute(normalized))
      return createStringError("--output " + Twine(i) + ": '" + path +
                               "': " + ec.message());
    sys::path::remove_dots(normalized, /*remove_dot_dot=*/true);
    for (const Seen &other : seen)
      if (other.normalized == normalized || (id && other.id == id))
        return createStringError("--output " + Twine(other.index) + " and " +
                                 Twine(i) + " both write '" + path +
                                 "': give each result its own file");
    seen.push_back({normalized.str().str(), id, i});
  }
  return Error::success();
}

static Error writeTemporary(StringRef path, const HostTensor &tensor,
                            std::vector<PendingOutput> &pending) {
  Expected<sys::fs::TempFile> temp = writeNpyTemporary(path, tensor);
  if (!temp)
    return temp.takeError();
  pending.push_back({path.str(), std::move(*temp), "", false});
  return Error::success();
}

/// Puts every path back as it was before publishing and removes the
/// temporaries and backups.
static void rollBack(std::vector<PendingOutput> &pending) {
  for (PendingOutput &output : llvm::reverse(pending)) {
    if (!output.backup.empty()) {
      if (sys::fs::rename(output.backup, output.path))
        WithColor::warning(errs(), "kvmerge-run")
            << "could not restore '" << output.path << "'; its previous "
            << "contents are in '" << output.backup << "'\n";
    } else if (output.published) {
      sys::fs::remove(output.path);
    }
    if (!output.published)
      consumeError(output.temp.discard());
  }
  pending.clear();
}

/// Keeps the current contents of `output.path` (if any) in a new file next
/// to it.
static Error makeBackup(PendingOutput &output) {
  if (!sys::fs::exists(output.path))
    return Error::success();
  SmallString<256> backup;
  int fd;
  if (std::error_code ec = sys::fs::createUniqueFile(
          output.path + ".bak-%%%%%%", fd, backup))
    return createStringError("cannot back up '" + output.path +
                             "': " + ec.message());
  sys::Process::SafelyCloseFileDescriptor(fd);
  // A hard link replaces the empty file atomically; copy where links are not
  // supported.
  std::error_code ec = sys::fs::remove(backup);
  if (!ec)
    ec = sys::fs::create_hard_link(output.path, backup);
  if (ec)
    ec = sys::fs::copy_file(output.path, backup);
  if (ec) {
    sys::fs::remove(backup);
    return createStringError("cannot back up '" + output.path +
                             "': " + ec.message());
  }
  output.backup = backup.str().str();
  return Error::success();
}

/// Publishes every pending output, or none of them.
static Error publishAll(std::vector<PendingOutput> &pending) {
  for (PendingOutput &output : pending) {
    Error err = makeBackup(output);
    if (!err)
      err = output.temp.keep(output.path);
    if (err) {
      Error message = createStringError("cannot write '" + output.path +
                                        "': " + toString(std::move(err)) +
                                        " (no output was written)");
      rollBack(pending);
      return message;
    }
    output.published = true;
  }
  for (PendingOutput &output : pending)
    if (!output.backup.empty())
      sys::fs::remove(output.backup);
  pending.clear();
  return Error::success();
}

/// Enough for any measurement (the median of a million runs), small enough
/// that the timings fit in memory.
constexpr unsigned kMaxBenchmarkRepetitions = 1000000;

static int runMain() {
  if (benchmarkRepetitions > kMaxBenchmarkRepetitions)
    return fail(createStringError(
        "--benchmark-repetitions=" + Twine(benchmarkRepetitions) +
        " is too many (at most " + Twine(kMaxBenchmarkRepetitions) + ")"));
  int threads = 0;
  if (threadsFlag) {
    std::optional<int> n = parseThreads(*threadsFlag);
    if (!n)
      return fail(createStringError(
          "--threads='" + *threadsFlag + "' is not a thread count (expected "
          "an integer in 1.." + Twine(kMaxThreads) + ")"));
    threads = *n;
  } else {
    std::string envError;
    threads = defaultThreads(&envError);
    if (!envError.empty())
      return fail(createStringError(envError));
  }
  setThreads(threads);

  RunnerOptions options;
  options.device = deviceName;
  options.optLevel = optLevel;
  options.pipelineOptions = pipelineOptions;
  Expected<std::unique_ptr<Runner>> runnerOrError =
      Runner::loadFile(inputFilename, options);
  if (!runnerOrError)
    return fail(runnerOrError.takeError());
  Runner &runner = **runnerOrError;

  Expected<std::string> name = chooseFunction(runner);
  if (!name)
    return fail(name.takeError());
  Expected<const FunctionSignature *> function = runner.lookupFunction(*name);
  if (!function)
    return fail(function.takeError());
  const FunctionSignature &signature = **function;

  // Arity first, then each input (a .npy file's ambiguous '<V2' dtype is
  // resolved with the argument's type).
  size_t numInputs = signature.inputs.size();
  if (inputFlags.size() != numInputs)
    return fail(createStringError(
        "function '" + *name + "' takes " + Twine(numInputs) + " input" +
        (numInputs == 1 ? "" : "s") + ", got " + Twine(inputFlags.size())));
  std::vector<HostTensor> inputs;
  for (auto [i, flag] : llvm::enumerate(inputFlags)) {
    StringRef text = flag;
    bool isFile = text.consume_front("@");
    Expected<HostTensor> tensor =
        isFile ? readNpyFile(text, signature.inputs[i].elementType)
               : parseTensorLiteral(text);
    if (!tensor)
      return fail(createStringError("--input " + Twine(i) +
                                    (isFile ? "" : " ('" + flag + "')") + ": " +
                                    toString(tensor.takeError())));
    inputs.push_back(std::move(*tensor));
  }
  SmallVector<ConstTensorView> inputViews;
  for (const HostTensor &input : inputs)
    inputViews.push_back(input.view());
  if (Error err = runner.checkInputs(*name, inputViews))
    return fail(std::move(err));

  // Outputs.
  size_t numResults = signature.results.size();
  if (outputFlags.size() > numResults)
    return fail(
        createStringError("function '" + *name + "' has " + Twine(numResults) +
                          " result" + (numResults == 1 ? "" : "s") + ", got " +
                          Twine(outputFlags.size()) + " --output flags"));
  for (const std::string &flag : outputFlags)
    if (flag != "-" && (flag.size() < 2 || flag[0] != '@'))
      return fail(
          createStringError("--output '" + flag + "' must be @FILE.npy or -"));
  if (Error err = checkOutputPaths())
    return fail(std::move(err));
  Expected<std::vector<HostTensor>> results = runner.allocateResults(*name);
  if (!results)
    return fail(results.takeError());
  SmallVector<TensorView> outputViews;
  for (HostTensor &result : *results)
    outputViews.push_back(result.view());

  // Compile, bind, run.
  Expected<PreparedCall> call = runner.prepare(*name, inputViews, outputViews);
  if (!call)
    return fail(call.takeError());
  call->invoke();
  if (Error err = runner.takeDeviceError())
    return fail(std::move(err));
  if (benchmarkRepetitions > 0) {
    std::vector<double> milliseconds;
    for (unsigned r = 0; r < benchmarkRepetitions; ++r) {
      auto start = std::chrono::steady_clock::now();
      call->invoke();
      auto end = std::chrono::steady_clock::now();
      milliseconds.push_back(
          std::chrono::duration<double, std::milli>(end - start).count());
    }
    if (Error err = runner.takeDeviceError())
      return fail(std::move(err));
    std::sort(milliseconds.begin(), milliseconds.end());
    size_t n = milliseconds.size();
    double median = n % 2 ? milliseconds[n / 2]
                          : (milliseconds[n / 2 - 1] + milliseconds[n / 2]) / 2;
    uint64_t bytes = 0;
    for (const HostTensor &input : inputs)
      bytes += input.getByteSize();
    for (const HostTensor &result : *results)
      bytes += result.getByteSize();
    outs() << "benchmark: " << *name << ", " << n
           << " repetitions after 1 warm-up run\n";
    outs() << "median_ms: " << format("%.6f", median) << "\n";
    outs() << "min_ms: " << format("%.6f", milliseconds.front()) << "\n";
    outs() << "bytes: " << bytes << "\n";
    if (median > 0)
      outs() << "GB/s: " << format("%.6f", bytes / (median * 1e6)) << "\n";
    else
      outs() << "GB/s: inf\n";
    outs() << "threads: " << getThreads() << "\n";
  }

  // Write every output file, then publish them all at once.
  std::vector<PendingOutput> pending;
  for (auto [i, result] : llvm::enumerate(*results)) {
    if (i >= outputFlags.size() || outputFlags[i] == "-")
      continue;
    if (Error err = writeTemporary(StringRef(outputFlags[i]).drop_front(),
                                   result, pending)) {
      rollBack(pending);
      return fail(std::move(err));
    }
  }
  if (Error err = publishAll(pending))
    return fail(std::move(err));
  for (auto [i, result] : llvm::enumerate(*results))
    if (i >= outputFlags.size() || outputFlags[i] == "-")
      outs() << "result[" << i
             << "]: " << formatTensor(result, printMaxElements) << "\n";
  outs().flush();
  return 0;
}

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  std::vector<char *> args;
  for (int i = 0; i < argc; ++i) {
    StringRef arg = argv[i];
    if (i > 0 && (arg == "--threads" || arg == "-threads")) {
      threadsFlag = i + 1 < argc ? std::string(argv[++i]) : std::string();
      continue;
    }
    if (i > 0 && (arg.consume_front("--threads=") ||
                  arg.consume_front("-threads="))) {
      threadsFlag = arg.str();
      continue;
    }
    args.push_back(argv[i]);
  }
  cl::HideUnrelatedOptions(runCategory);
  cl::ParseCommandLineOptions(
      static_cast<int>(args.size()), args.data(),
      "kvmerge-run: lower an .mlir module with the kvmerge pipeline, "
      "JIT-compile it, and run one function on host tensors\n\n"
      "  kvmerge-run model.mlir --function=f --input=@q.npy "
      "--input=4x8xf32=1 --output=@out.npy\n\n"
      "  --threads=N: threads the CPU code's parallel loops run on (1 = "
      "sequential; default: $KVMERGE_THREADS, else every CPU this process "
      "may use)\n");
  return runMain();
}
