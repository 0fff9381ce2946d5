//===- KVMergeModule.cpp - kvmerge._native (nanobind) ---------------------===//
//
// The native half of the kvmerge Python package. It deals in text and raw
// buffers; python/kvmerge/{ir,passes,jit}.py put the NumPy-facing API on top.
//
//   parse(source, name, generic)              -> str   parse + verify + print
//   run_pipeline(source, pipeline, name)      -> str   textual pass pipeline
//   translate_to_llvm_ir(source, name, c_if)  -> str   kvmerge-lower-to-llvm,
//                                                      then LLVM IR
//   Executable(source, name, opt_level)              a kvmerge::runtime::Runner
//     .functions / .signature(fn) / .compile() / .invoke(fn, inputs, outputs)
//
// MLIR errors are raised as the class given to set_error_class
// (kvmerge.CompileError) with the diagnostics (file:line:col: error: ...);
// bad arguments raise ValueError. The GIL is released while MLIR works.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/InitAllKVMerge.h"
#include "kvmerge/Pipelines/Pipelines.h"
#include "kvmerge/Runtime/Allocator.h"
#include "kvmerge/Runtime/ParallelFor.h"
#include "kvmerge/Runtime/Runner.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;
using kvmerge::runtime::ConstTensorView;
using kvmerge::runtime::ElementType;
using kvmerge::runtime::FunctionSignature;
using kvmerge::runtime::Runner;
using kvmerge::runtime::TensorView;
using kvmerge::runtime::ValueSpec;

namespace {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

/// An MLIR failure; translated to the registered error class.
struct CompileFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// kvmerge.CompileError once the package has called set_error_class.
nb::object &errorClass() {
  static nb::object *cls = new nb::object(); // leaked: outlives interpreter
  return *cls;
}

[[noreturn]] void throwValueError(const std::string &message) {
  throw nb::value_error(message.c_str());
}

//===----------------------------------------------------------------------===//
// Registries
//===----------------------------------------------------------------------===//

/// Every upstream dialect and extension, kvcache, and the LLVM IR
/// translations. Built once; each context copies it.
const mlir::DialectRegistry &registry() {
  static const mlir::DialectRegistry *result = [] {
    auto *r = new mlir::DialectRegistry();
    mlir::registerAllDialects(*r);
    mlir::registerAllExtensions(*r);
    kvmerge::registerAllDialects(*r);
    mlir::registerAllToLLVMIRTranslations(*r);
    return r;
  }();
  return *result;
}

/// Upstream and kvmerge passes and pipelines, for textual pipelines. Pipelines
/// may be registered only once per process.
void registerPassesOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    mlir::registerAllPasses();
    kvmerge::registerAllPasses();
  });
}

/// A context with a source buffer and a diagnostic handler that collects
/// every diagnostic as "name:line:col: error: ..." text.
class Session {
public:
  Session(const std::string &source, const std::string &name)
      : context(registry()) {
    // Python callers build many small modules: no thread pool per context.
    context.disableMultithreading();
    sourceMgr.AddNewSourceBuffer(
        llvm::MemoryBuffer::getMemBufferCopy(source, name), llvm::SMLoc());
    handler = std::make_unique<mlir::SourceMgrDiagnosticHandler>(
        sourceMgr, &context, diagnosticStream);
  }

  /// Parses and verifies; throws CompileFailure with the diagnostics.
  mlir::ModuleOp parse() {
    if (llvm::Error err = kvmerge::runtime::checkNestingDepth(
            sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID())->getBuffer()))
      fail("failed to parse '" + bufferName() +
           "': " + llvm::toString(std::move(err)));
    // Deep affine expressions recurse past the default stack (issue 16).
    kvmerge::runtime::runOnLargeStack([&] {
      module = mlir::parseSourceFile<mlir::ModuleOp>(
          sourceMgr, mlir::ParserConfig(&context));
    });
    if (!module)
      fail("failed to parse '" + bufferName() + "'");
    return *module;
  }

  [[noreturn]] void fail(const std::string &what) {
    std::string text = llvm::StringRef(diagnostics).rtrim().str();
    throw CompileFailure(text.empty() ? what : what + ":\n" + text);
  }

  std::string print(bool generic) {
    std::string out;
    llvm::raw_string_ostream os(out);
    mlir::OpPrintingFlags flags;
    if (generic)
      flags.printGenericOpForm();
    module->print(os, flags);
    return out;
  }

  std::string bufferName() const {
    return sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID())
        ->getBufferIdentifier()
        .str();
  }

  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;

private:
  llvm::SourceMgr sourceMgr;
  std::string diagnostics;
  llvm::raw_string_ostream diagnosticStream{diagnostics};
  std::unique_ptr<mlir::SourceMgrDiagnosticHandler> handler;
};

std::string parseModule(const std::string &source, const std::string &name,
                        bool generic) {
  nb::gil_scoped_release release;
  Session session(source, name);
  session.parse();
  return session.print(generic);
}

std::string runPipeline(const std::string &source, const std::string &pipeline,
                        const std::string &name, bool generic) {
  nb::gil_scoped_release release;
  registerPassesOnce();
  Session session(source, name);
  mlir::ModuleOp module = session.parse();
  mlir::PassManager pm(&session.context, mlir::ModuleOp::getOperationName());
  std::string pipelineErrors;
  llvm::raw_string_ostream pipelineErrorStream(pipelineErrors);
  // Accept both "builtin.module(...)" and a bare pass list ("cse,canonicalize").
  llvm::StringRef text = llvm::StringRef(pipeline).trim();
  bool parsed = false;
  if (text.contains('(') && text.starts_with("builtin.module")) {
    // Anchored: parse it whole (as mlirParsePassPipeline does).
    llvm::FailureOr<mlir::OpPassManager> anchored =
        mlir::parsePassPipeline(text, pipelineErrorStream);
    if (mlir::succeeded(anchored)) {
      static_cast<mlir::OpPassManager &>(pm) = std::move(*anchored);
      parsed = true;
    }
  } else {
    parsed = mlir::succeeded(
        mlir::parsePassPipeline(text, pm, pipelineErrorStream));
  }
  if (!parsed)
    throwValueError("pipeline: cannot parse '" + pipeline + "': " +
                    llvm::StringRef(pipelineErrors).trim().str());
  if (mlir::failed(pm.run(module)))
    session.fail("pass pipeline '" + pipeline + "' failed on '" +
                 session.bufferName() + "'");
  return session.print(generic);
}

std::string translateToLLVMIR(const std::string &source,
                              const std::string &name, bool emitCInterface) {
  nb::gil_scoped_release release;
  Session session(source, name);
  mlir::ModuleOp module = session.parse();
  mlir::PassManager pm(&session.context, mlir::ModuleOp::getOperationName());
  kvmerge::LowerToLLVMOptions options;
  options.emitCInterface = emitCInterface;
  kvmerge::buildLowerToLLVMPipeline(pm, options);
  if (mlir::failed(pm.run(module)))
    session.fail("failed to lower '" + session.bufferName() + "' to LLVM");
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule = mlir::translateModuleToLLVMIR(
      module, llvmContext, session.bufferName());
  if (!llvmModule)
    session.fail("failed to translate '" + session.bufferName() +
                 "' to LLVM IR");
  std::string out;
  llvm::raw_string_ostream os(out);
  llvmModule->print(os, nullptr);
  return out;
}

//===----------------------------------------------------------------------===//
// Executable
//===----------------------------------------------------------------------===//

/// A Py_buffer held for the duration of a call.
class Buffer {
public:
  Buffer(nb::handle object, bool writable, const std::string &what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (writable)
      flags |= PyBUF_WRITABLE;
    if (PyObject_GetBuffer(object.ptr(), &view, flags) != 0) {
      PyErr_Clear();
      throwValueError(what + ": expected a C-contiguous" +
                      std::string(writable ? ", writable" : "") +
                      " buffer (a NumPy array), got " +
                      nb::cast<std::string>(nb::str(object.type())));
    }
    held = true;
  }
  ~Buffer() {
    if (held)
      PyBuffer_Release(&view);
  }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  Buffer(Buffer &&other) noexcept : view(other.view), held(other.held) {
    other.held = false;
  }

  llvm::SmallVector<int64_t, 4> shape() const {
    return llvm::SmallVector<int64_t, 4>(view.shape, view.shape + view.ndim);
  }

  Py_buffer view{};
  bool held = false;
};

ElementType parseElementTypeOrThrow(const std::string &name,
                                    const std::string &what) {
  std::optional<ElementType> type = kvmerge::runtime::parseElementType(name);
  if (!type)
    throwValueError(what + ": unknown element type '" + name +
                    "' (expected f16, bf16, f32, f64, i8, i32 or i64)");
  return *type;
}

/// (element type, buffer) pairs as the runtime's views. The buffer's item
/// size must match the element type (bf16 travels as a uint16 view).
template <typename View>
void collectViews(const std::vector<std::tuple<std::string, nb::object>> &args,
                  bool writable, const char *kind,
                  std::vector<Buffer> &buffers, std::vector<View> &views) {
  buffers.reserve(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    std::string what = std::string(kind) + "[" + std::to_string(i) + "]";
    ElementType type = parseElementTypeOrThrow(std::get<0>(args[i]), what);
    buffers.emplace_back(std::get<1>(args[i]), writable, what);
    Buffer &buffer = buffers.back();
    size_t width = kvmerge::runtime::getElementByteWidth(type);
    if (static_cast<size_t>(buffer.view.itemsize) != width)
      throwValueError(what + ": " + std::get<0>(args[i]) + " needs " +
                      std::to_string(width) + "-byte elements, the buffer has " +
                      std::to_string(buffer.view.itemsize));
    View view;
    view.elementType = type;
    view.shape = buffer.shape();
    view.data = buffer.view.buf;
    views.push_back(std::move(view));
  }
}

nb::tuple specToTuple(const ValueSpec &spec) {
  nb::list shape;
  for (int64_t d : spec.shape)
    shape.append(d == kvmerge::runtime::kDynamicDim ? nb::object(nb::none())
                                                    : nb::object(nb::int_(d)));
  return nb::make_tuple(
      std::string(kvmerge::runtime::stringifyElementType(spec.elementType)),
      nb::tuple(shape), spec.isTensor);
}

class Executable {
public:
  Executable(const std::string &source, const std::string &name,
             unsigned optLevel) {
    kvmerge::runtime::RunnerOptions options;
    options.optLevel = optLevel;
    llvm::Expected<std::unique_ptr<Runner>> loaded = [&] {
      nb::gil_scoped_release release;
      return Runner::loadSource(source, name, options);
    }();
    if (!loaded)
      throw CompileFailure(llvm::toString(loaded.takeError()));
    runner = std::move(*loaded);
  }

  std::vector<std::string> functions() const {
    std::vector<std::string> names;
    for (const FunctionSignature &f : runner->getFunctions())
      if (f.unsupportedReason.empty())
        names.push_back(f.name);
    return names;
  }

  const FunctionSignature &lookup(const std::string &name) const {
    llvm::Expected<const FunctionSignature *> f = runner->lookupFunction(name);
    if (!f)
      throwValueError("function: " + llvm::toString(f.takeError()));
    return **f;
  }

  nb::tuple signature(const std::string &name) const {
    const FunctionSignature &f = lookup(name);
    nb::list inputs, results;
    for (const ValueSpec &spec : f.inputs)
      inputs.append(specToTuple(spec));
    for (const ValueSpec &spec : f.results)
      results.append(specToTuple(spec));
    return nb::make_tuple(nb::tuple(inputs), nb::tuple(results));
  }

  void compile() {
    llvm::Error err = llvm::Error::success();
    {
      nb::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex);
      err = runner->compile();
    }
    if (err)
      throw CompileFailure(llvm::toString(std::move(err)));
  }

  void invoke(const std::string &name,
              const std::vector<std::tuple<std::string, nb::object>> &inputs,
              const std::vector<std::tuple<std::string, nb::object>> &outputs,
              int threads) {
    if (threads < 0 || threads > kvmerge::runtime::kMaxThreads)
      throwValueError("threads: expected 0 (the default) or a count in 1.." +
                      std::to_string(kvmerge::runtime::kMaxThreads) +
                      ", got " + std::to_string(threads));
    lookup(name);
    std::vector<Buffer> inBuffers, outBuffers;
    std::vector<ConstTensorView> inViews;
    std::vector<TensorView> outViews;
    collectViews(inputs, /*writable=*/false, "inputs", inBuffers, inViews);
    collectViews(outputs, /*writable=*/true, "outputs", outBuffers, outViews);
    // Argument errors are ValueErrors; lowering/JIT errors CompileErrors.
    if (llvm::Error err = runner->checkInputs(name, inViews))
      throwValueError("inputs: " + llvm::toString(std::move(err)));
    compile();
    llvm::Error err = llvm::Error::success();
    {
      nb::gil_scoped_release release;
      // Runner caches function lookups: one call at a time per executable.
      std::lock_guard<std::mutex> lock(mutex);
      kvmerge::runtime::ScopedThreads scoped(threads);
      err = runner->invoke(name, inViews, outViews);
    }
    if (err)
      throwValueError("outputs: " + llvm::toString(std::move(err)));
  }

private:
  std::unique_ptr<Runner> runner;
  std::mutex mutex;
};

} // namespace

NB_MODULE(_native, m) {
  m.doc() = "kvmerge's native extension (nanobind): MLIR parsing, pass "
            "pipelines, LLVM IR translation and the in-process JIT. Use it "
            "through kvmerge.ir, kvmerge.passes and kvmerge.jit.";

  nb::register_exception_translator([](const std::exception_ptr &p, void *) {
    try {
      std::rethrow_exception(p);
    } catch (const CompileFailure &e) {
      PyObject *cls = errorClass().is_valid() ? errorClass().ptr()
                                              : PyExc_RuntimeError;
      PyErr_SetString(cls, e.what());
    }
  });

  m.def(
      "set_error_class",
      [](nb::object cls) { errorClass() = std::move(cls); }, "cls"_a,
      "Sets the exception class raised for MLIR errors (kvmerge.CompileError).");

  m.def("parse", &parseModule, "source"_a, "name"_a = "<source>",
        "generic"_a = false,
        "Parses and verifies MLIR text (kvcache and every upstream dialect) "
        "and prints it back.");
  m.def("run_pipeline", &runPipeline, "source"_a, "pipeline"_a,
        "name"_a = "<source>", "generic"_a = false,
        "Runs a textual pass pipeline (kvmerge and upstream passes) on MLIR "
        "text and prints the result.");
  m.def("translate_to_llvm_ir", &translateToLLVMIR, "source"_a,
        "name"_a = "<source>", "emit_c_interface"_a = true,
        "Lowers MLIR text with kvmerge-lower-to-llvm and translates it to "
        "LLVM IR text.");

  nb::class_<Executable>(m, "Executable",
                         "A parsed module whose functions are JIT-compiled "
                         "on first use (kvmerge::runtime::Runner).")
      .def(nb::init<const std::string &, const std::string &, unsigned>(),
           "source"_a, "name"_a = "<source>", "opt_level"_a = 3)
      .def_prop_ro("functions", &Executable::functions,
                   "Names of the runnable public functions.")
      .def("signature", &Executable::signature, "function"_a,
           "((elt, shape, is_tensor) per input, ... per result); dynamic "
           "dimensions are None.")
      .def("compile", &Executable::compile,
           "Lowers and JIT-compiles the module (idempotent).")
      .def("invoke", &Executable::invoke, "function"_a, "inputs"_a,
           "outputs"_a, "threads"_a = 0,
           "Calls `function`; inputs and outputs are (element type, "
           "C-contiguous buffer) pairs, outputs preallocated; `threads`: "
           "threads of its parallel loops (0 = default_threads()).");
  m.def(
      "default_threads",
      [] {
        std::string error;
        int n = kvmerge::runtime::defaultThreads(&error);
        if (!error.empty())
          throwValueError(error);
        return n;
      },
      "Threads compiled code uses by default: $KVMERGE_THREADS, else every "
      "CPU this process may run on (ValueError for an invalid "
      "KVMERGE_THREADS).");
  m.def(
      "allocator_stats",
      [] {
        kvmerge::runtime::AllocatorStats s = kvmerge::runtime::allocatorStats();
        nb::dict d;
        d["large_allocations"] = s.largeAllocations;
        d["reused"] = s.reused;
        d["cached_bytes"] = s.cachedBytes;
        d["cached_blocks"] = s.cachedBlocks;
        d["budget_bytes"] = kvmerge::runtime::allocatorCacheBudget();
        return d;
      },
      "Counters of the runtime's caching allocator (compiled code's buffers "
      "of 64 KiB or more): large_allocations, reused, cached_bytes, "
      "cached_blocks, budget_bytes ($KVMERGE_ALLOC_CACHE_MB).");
  m.def("release_allocator_cache", &kvmerge::runtime::releaseCachedBlocks,
        "Frees the blocks the runtime's allocator keeps for reuse.");
}
