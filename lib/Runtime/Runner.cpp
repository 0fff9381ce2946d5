//===- Runner.cpp - load, lower, JIT and call kvmerge functions -----------===//

#include "kvmerge/Runtime/Runner.h"
#include "kvmerge/Runtime/Allocator.h"
#include "kvmerge/Runtime/ParallelFor.h"
#include "kvmerge/Runtime/CudaRuntime.h"
#include "kvmerge/Runtime/MemrefCopy.h"

#include "kvmerge/InitAllKVMerge.h"
#include "kvmerge/Pipelines/Pipelines.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"

#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/Orc/Mangling.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/thread.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

using namespace llvm;
using namespace kvmerge::runtime;

static_assert(kDynamicDim == mlir::ShapedType::kDynamic,
              "kDynamicDim must match mlir::ShapedType::kDynamic");

//===----------------------------------------------------------------------===//
// Signatures
//===----------------------------------------------------------------------===//

bool ValueSpec::hasStaticShape() const {
  return llvm::none_of(shape, [](int64_t d) { return d == kDynamicDim; });
}

bool ValueSpec::matchesShape(ArrayRef<int64_t> concrete) const {
  if (concrete.size() != shape.size())
    return false;
  for (auto [expected, actual] : llvm::zip_equal(shape, concrete))
    if (expected != kDynamicDim && expected != actual)
      return false;
  return true;
}

static std::string typeToString(mlir::Type type) {
  std::string result;
  raw_string_ostream os(result);
  type.print(os);
  return result;
}

static std::optional<ElementType> getElementType(mlir::Type type) {
  if (type.isF16())
    return ElementType::F16;
  if (type.isBF16())
    return ElementType::BF16;
  if (type.isF32())
    return ElementType::F32;
  if (type.isF64())
    return ElementType::F64;
  if (auto intType = dyn_cast<mlir::IntegerType>(type)) {
    if (intType.isUnsigned())
      return std::nullopt;
    switch (intType.getWidth()) {
    case 8:
      return ElementType::I8;
    case 32:
      return ElementType::I32;
    case 64:
      return ElementType::I64;
    default:
      return std::nullopt;
    }
  }
  return std::nullopt;
}

/// Fills `spec` from an argument or result type; returns false when the
/// runtime cannot pass that type.
static bool getValueSpec(mlir::Type type, bool allowScalar, ValueSpec &spec) {
  spec.typeString = typeToString(type);
  if (auto tensorType = dyn_cast<mlir::RankedTensorType>(type)) {
    if (tensorType.getEncoding())
      return false;
    std::optional<ElementType> element =
        getElementType(tensorType.getElementType());
    if (!element)
      return false;
    spec.isTensor = true;
    spec.elementType = *element;
    spec.shape.assign(tensorType.getShape().begin(),
                      tensorType.getShape().end());
    return true;
  }
  if (!allowScalar)
    return false;
  std::optional<ElementType> element = getElementType(type);
  if (!element)
    return false;
  spec.isTensor = false;
  spec.elementType = *element;
  return true;
}

static FunctionSignature getSignature(mlir::func::FuncOp func) {
  FunctionSignature signature;
  signature.name = func.getSymName().str();
  mlir::FunctionType type = func.getFunctionType();
  auto unsupported = [&](StringRef what, unsigned index, mlir::Type type,
                         StringRef supported) {
    if (!signature.unsupportedReason.empty())
      return;
    signature.unsupportedReason =
        (what + " " + Twine(index) + " has type " + typeToString(type) + "; " +
         supported + " of f16, bf16, f32, f64, i8, i32 or i64 are supported")
            .str();
  };
  for (auto [i, input] : llvm::enumerate(type.getInputs())) {
    ValueSpec spec;
    if (!getValueSpec(input, /*allowScalar=*/true, spec))
      unsupported("argument", i, input,
                  "only ranked tensors (no encoding) and scalars");
    signature.inputs.push_back(std::move(spec));
  }
  for (auto [i, result] : llvm::enumerate(type.getResults())) {
    ValueSpec spec;
    if (!getValueSpec(result, /*allowScalar=*/false, spec))
      unsupported("result", i, result, "only ranked tensors (no encoding)");
    signature.results.push_back(std::move(spec));
  }
  if (!func.isPublic())
    signature.unsupportedReason =
        "it is private; only public functions get a C interface";
  return signature;
}

//===----------------------------------------------------------------------===//
// Runner
//===----------------------------------------------------------------------===//

struct Runner::Impl {
  RunnerOptions options;
  std::unique_ptr<mlir::MLIRContext> context;
  llvm::SourceMgr sourceMgr;
  std::string bufferName;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<mlir::ExecutionEngine> engine;
  /// Set when lowering failed (the module is then unusable).
  std::string compileError;
  llvm::StringMap<void (*)(void **)> packedFunctions;
};

Runner::Runner(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
Runner::~Runner() = default;

[[noreturn]] static void allocationFailed(size_t bytes) {
  // No way to unwind through compiled code: report and exit like an LLVM
  // fatal error (kvmerge-run exits 1; Python's compiled path runs it).
  char message[160];
  std::snprintf(message, sizeof(message),
                "kvmerge: a compiled function could not allocate %zu bytes "
                "(out of memory)\n",
                bytes);
  std::fputs(message, stderr);
  std::fflush(stderr);
  std::_Exit(1);
}

static void *checkedMalloc(size_t bytes) {
  void *p = std::malloc(bytes);
  if (!p && bytes)
    allocationFailed(bytes);
  return p;
}

static void *checkedAlignedAlloc(size_t alignment, size_t bytes) {
  void *p = std::aligned_alloc(alignment, bytes);
  if (!p && bytes)
    allocationFailed(bytes);
  return p;
}

static void initializeNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
}

static Error checkDevice(StringRef device) {
  if (device == "cpu")
    return Error::success();
  if (device == "cuda") {
    // The driver is opened at run time (dlopen): no CUDA at build time.
    if (Error err = cuda::initialize())
      return createStringError("device cuda is not available: " +
                               toString(std::move(err)));
    return Error::success();
  }
  return createStringError("unknown device '" + device +
                           "' (available: cpu, cuda)");
}

Expected<std::unique_ptr<Runner>>
Runner::loadFile(StringRef path, const RunnerOptions &options) {
  // A device (/dev/zero) never ends: refuse it rather than reading until
  // memory runs out. Pipes and stdin are read as they come.
  sys::fs::file_status status;
  if (path != "-" && !sys::fs::status(path, status) &&
      (status.type() == sys::fs::file_type::character_file ||
       status.type() == sys::fs::file_type::block_file))
    return createStringError("cannot read '" + path +
                             "': a device, not a regular file");
  ErrorOr<std::unique_ptr<MemoryBuffer>> file =
      MemoryBuffer::getFileOrSTDIN(path, /*IsText=*/true);
  if (std::error_code ec = file.getError())
    return createStringError(ec, "cannot read '%s': %s", path.str().c_str(),
                             ec.message().c_str());
  return load(std::move(*file), options);
}

Expected<std::unique_ptr<Runner>>
Runner::loadSource(StringRef source, StringRef bufferName,
                   const RunnerOptions &options) {
  return load(MemoryBuffer::getMemBufferCopy(source, bufferName), options);
}

Error kvmerge::runtime::checkNestingDepth(StringRef text, unsigned limit) {
  unsigned depth = 0, line = 1;
  for (size_t i = 0, e = text.size(); i < e; ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (c == '"') { // skip a string literal (with escapes)
      for (++i; i < e && text[i] != '"' && text[i] != '\n'; ++i)
        if (text[i] == '\\')
          ++i;
    } else if (c == '/' && i + 1 < e && text[i + 1] == '/') {
      while (i + 1 < e && text[i + 1] != '\n')
        ++i;
    } else if (c == '(' || c == '[' || c == '{' || c == '<') {
      if (++depth > limit)
        return createStringError("line " + Twine(line) +
                                 ": brackets nest deeper than " + Twine(limit) +
                                 " levels");
    } else if (c == ')' || c == ']' || c == '}' ||
               (c == '>' && (i == 0 || text[i - 1] != '-'))) {
      if (depth)
        --depth;
    }
  }
  return Error::success();
}

void kvmerge::runtime::runOnLargeStack(function_ref<void()> fn) {
  llvm::thread worker(std::optional<unsigned>(1u << 30), [&] { fn(); });
  worker.join();
}

Expected<std::unique_ptr<Runner>>
Runner::load(std::unique_ptr<MemoryBuffer> buffer,
             const RunnerOptions &options) {
  if (Error err = checkNestingDepth(buffer->getBuffer()))
    return createStringError("cannot parse '" + buffer->getBufferIdentifier() +
                             "': " + toString(std::move(err)));
  if (Error err = checkDevice(options.device))
    return std::move(err);
  if (options.optLevel > 3)
    return createStringError("optimization level " + Twine(options.optLevel) +
                             " is not 0-3");

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  kvmerge::registerAllDialects(registry);
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::registerAllToLLVMIRTranslations(registry);

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->bufferName = buffer->getBufferIdentifier().str();
  impl->context = std::make_unique<mlir::MLIRContext>(registry);
  impl->context->loadDialect<mlir::func::FuncDialect,
                             mlir::bufferization::BufferizationDialect>();
  impl->sourceMgr.AddNewSourceBuffer(std::move(buffer), SMLoc());

  std::string diagnostics;
  raw_string_ostream diagnosticStream(diagnostics);
  {
    mlir::SourceMgrDiagnosticHandler handler(
        impl->sourceMgr, impl->context.get(), diagnosticStream);
    runOnLargeStack([&] {
      impl->module = mlir::parseSourceFile<mlir::ModuleOp>(
          impl->sourceMgr, mlir::ParserConfig(impl->context.get()));
    });
  }
  if (!impl->module) {
    StringRef text = StringRef(diagnostics).rtrim();
    return createStringError(text.empty()
                                 ? "failed to parse '" + impl->bufferName + "'"
                                 : text.str());
  }

  std::unique_ptr<Runner> runner(new Runner(std::move(impl)));
  for (auto func : runner->impl->module->getOps<mlir::func::FuncOp>())
    if (!func.isExternal())
      runner->functions.push_back(getSignature(func));
  return runner;
}

Expected<const FunctionSignature *>
Runner::lookupFunction(StringRef name) const {
  for (const FunctionSignature &function : functions) {
    if (function.name != name)
      continue;
    if (!function.unsupportedReason.empty())
      return createStringError("function '" + name + "' cannot be run: " +
                               function.unsupportedReason);
    return &function;
  }
  std::string available;
  for (const FunctionSignature &function : functions)
    if (function.unsupportedReason.empty())
      available += (available.empty() ? "" : ", ") + function.name;
  return createStringError(
      "function '" + name + "' not found in '" + impl->bufferName + "'" +
      (available.empty() ? " (it has no runnable functions)"
                         : " (available: " + available + ")"));
}

static std::string describeInput(const FunctionSignature &function,
                                 size_t index) {
  return ("input " + Twine(index) + " of '" + function.name + "' (%arg" +
          Twine(index) + ")")
      .str();
}

Error Runner::checkInputs(StringRef name,
                          ArrayRef<ConstTensorView> inputs) const {
  Expected<const FunctionSignature *> function = lookupFunction(name);
  if (!function)
    return function.takeError();
  const FunctionSignature &f = **function;
  if (inputs.size() != f.inputs.size())
    return createStringError(
        "function '" + name + "' takes " + Twine(f.inputs.size()) + " input" +
        (f.inputs.size() == 1 ? "" : "s") + ", got " + Twine(inputs.size()));
  for (auto [i, spec, input] : llvm::enumerate(f.inputs, inputs)) {
    std::string got = formatTensorType(input.elementType, input.shape);
    if (!spec.isTensor) {
      if (!input.shape.empty() || input.elementType != spec.elementType)
        return createStringError(describeInput(f, i) + " must be a scalar " +
                                 spec.typeString + " (write " +
                                 spec.typeString + "=VALUE), got " + got);
      continue;
    }
    if (!spec.matchesShape(input.shape) ||
        input.elementType != spec.elementType)
      return createStringError(describeInput(f, i) + " must be " +
                               spec.typeString + ", got " + got);
    if (input.getNumElements() != 0 && !input.data)
      return createStringError(describeInput(f, i) + " has no data");
  }
  return Error::success();
}

Expected<std::vector<HostTensor>>
Runner::allocateResults(StringRef name) const {
  Expected<const FunctionSignature *> function = lookupFunction(name);
  if (!function)
    return function.takeError();
  std::vector<HostTensor> results;
  for (auto [i, spec] : llvm::enumerate((*function)->results)) {
    if (!spec.hasStaticShape())
      return createStringError(
          "result " + Twine(i) + " of '" + name + "' has type " +
          spec.typeString +
          ": results must have static shapes, because the caller allocates "
          "every output buffer");
    Expected<HostTensor> tensor =
        HostTensor::allocate(spec.elementType, spec.shape);
    if (!tensor)
      return createStringError("result " + Twine(i) + " of '" + name +
                               "': " + toString(tensor.takeError()));
    results.push_back(std::move(*tensor));
  }
  return results;
}

Error Runner::compile() {
  if (impl->engine)
    return Error::success();
  if (!impl->compileError.empty())
    return createStringError(impl->compileError);
  mlir::MLIRContext *context = impl->context.get();
  mlir::ModuleOp module = *impl->module;

  // Compiled code must never write into caller buffers: bufferize with
  // read-only function arguments (copies are inserted where needed).
  auto readOnly = mlir::BoolAttr::get(context, false);
  for (auto func : module.getOps<mlir::func::FuncOp>()) {
    if (func.isExternal() || !func.isPublic())
      continue;
    for (auto [i, type] : llvm::enumerate(func.getArgumentTypes()))
      if (isa<mlir::TensorType>(type))
        func.setArgAttr(
            i, mlir::bufferization::BufferizationDialect::kWritableAttrName,
            readOnly);
  }

  std::string diagnostics;
  raw_string_ostream diagnosticStream(diagnostics);
  {
    mlir::SourceMgrDiagnosticHandler handler(impl->sourceMgr, context,
                                             diagnosticStream);
    mlir::PassManager pm(context, mlir::ModuleOp::getOperationName());
    if (impl->options.device == "cuda") {
      // PTX for the device's own architecture, JIT-compiled by the driver.
      kvmerge::LowerToNVVMOptions gpuOptions;
      gpuOptions.chip = cuda::chip();
      gpuOptions.features = "+ptx80";
      gpuOptions.format = "isa";
      kvmerge::buildLowerToNVVMPipeline(pm, gpuOptions);
    } else {
      kvmerge::LowerToLLVMOptions pipelineOptions;
      // Parallel loops run on the thread pool (ParallelFor.h) and buffers
      // come from the caching allocator (Allocator.h) unless the options say
      // parallel-runtime=false / runtime-allocator=false.
      pipelineOptions.parallelRuntime = true;
      pipelineOptions.runtimeAllocator = true;
      if (!impl->options.pipelineOptions.empty() &&
          mlir::failed(
              pipelineOptions.parseFromString(impl->options.pipelineOptions))) {
        impl->compileError = "invalid pipeline options '" +
                             impl->options.pipelineOptions +
                             "' for --kvmerge-lower-to-llvm";
        return createStringError(impl->compileError);
      }
      if (!pipelineOptions.emitCInterface) {
        impl->compileError =
            "pipeline option emit-c-interface=" +
            std::string(pipelineOptions.emitCInterface ? "1" : "0") +
            " cannot be run: the runner calls the _mlir_ciface_ wrappers "
            "(leave emit-c-interface at its default, true)";
        return createStringError(impl->compileError);
      }
      kvmerge::buildLowerToLLVMPipeline(pm, pipelineOptions);
    }
    if (mlir::failed(pm.run(module))) {
      // The module is now partially lowered; a retry would not help.
      impl->compileError = ("failed to lower '" + impl->bufferName +
                            "' to LLVM:\n" + StringRef(diagnostics).rtrim())
                               .str();
      return createStringError(impl->compileError);
    }
  }

  // Past this point the module is lowered; remember any failure.
  auto fail = [&](const Twine &message) -> Error {
    impl->compileError = message.str();
    return createStringError(impl->compileError);
  };
  initializeNativeTarget();
  Expected<orc::JITTargetMachineBuilder> machineBuilder =
      orc::JITTargetMachineBuilder::detectHost();
  if (!machineBuilder)
    return fail("cannot detect the host target: " +
                toString(machineBuilder.takeError()));
  static const CodeGenOptLevel codeGenLevels[] = {
      CodeGenOptLevel::None, CodeGenOptLevel::Less, CodeGenOptLevel::Default,
      CodeGenOptLevel::Aggressive};
  CodeGenOptLevel codeGenLevel = codeGenLevels[impl->options.optLevel];
  machineBuilder->setCodeGenOptLevel(codeGenLevel);
  Expected<std::unique_ptr<TargetMachine>> machine =
      machineBuilder->createTargetMachine();
  if (!machine)
    return fail("cannot create the host target machine: " +
                toString(machine.takeError()));

  auto transformer = mlir::makeOptimizingTransformer(
      impl->options.optLevel, /*sizeLevel=*/0, machine->get());
  mlir::ExecutionEngineOptions engineOptions;
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = codeGenLevel;
  {
    mlir::SourceMgrDiagnosticHandler handler(impl->sourceMgr, context,
                                             diagnosticStream);
    Expected<std::unique_ptr<mlir::ExecutionEngine>> engine =
        mlir::ExecutionEngine::create(module, engineOptions,
                                      std::move(*machine));
    if (!engine)
      return fail(
          "failed to JIT-compile '" + impl->bufferName +
          "': " + toString(engine.takeError()) +
          (diagnostics.empty() ? "" : "\n" + StringRef(diagnostics).rtrim()));
    impl->engine = std::move(*engine);
  }
  // `memref.copy` of non-contiguous memrefs lowers to a call to
  // `memrefCopy`.
  impl->engine->registerSymbols([](orc::MangleAndInterner interner) {
    orc::SymbolMap symbols;
    symbols[interner("memrefCopy")] = {
        orc::ExecutorAddr::fromPtr(&memrefCopy),
        JITSymbolFlags::Exported};
    // Compiled code does not check its allocations: fail with a message
    // instead of writing through a null pointer.
    symbols[interner("malloc")] = {orc::ExecutorAddr::fromPtr(&checkedMalloc),
                                   JITSymbolFlags::Exported};
    symbols[interner("aligned_alloc")] = {
        orc::ExecutorAddr::fromPtr(&checkedAlignedAlloc),
        JITSymbolFlags::Exported};
    // With runtime-allocator (the default here), buffers come from the
    // runtime's caching allocator (include/kvmerge/Runtime/Allocator.h).
    symbols[interner("_mlir_memref_to_llvm_alloc")] = {
        orc::ExecutorAddr::fromPtr(&kvmerge_runtime_alloc),
        JITSymbolFlags::Exported};
    symbols[interner("_mlir_memref_to_llvm_aligned_alloc")] = {
        orc::ExecutorAddr::fromPtr(&kvmerge_runtime_aligned_alloc),
        JITSymbolFlags::Exported};
    symbols[interner("_mlir_memref_to_llvm_free")] = {
        orc::ExecutorAddr::fromPtr(&kvmerge_runtime_free),
        JITSymbolFlags::Exported};
    // Outlined parallel loops call the thread pool.
    symbols[interner("kvmerge_parallel_for")] = {
        orc::ExecutorAddr::fromPtr(&kvmerge_parallel_for),
        JITSymbolFlags::Exported};
    // GPU code calls MLIR's mgpu* runtime ABI, implemented on the
    // dlopen'ed driver (harmless for CPU code, which never calls it).
    for (auto [name, address] : cuda::symbols())
      symbols[interner(name)] = {orc::ExecutorAddr::fromPtr(address),
                                 JITSymbolFlags::Exported};
    return symbols;
  });
  // Static constructors load the GPU modules (cuModuleLoadData).
  impl->engine->initialize();
  if (impl->options.device == "cuda")
    if (Error err = cuda::takeError())
      return fail("failed to load the GPU kernels of '" + impl->bufferName +
                  "': " + toString(std::move(err)));
  // ORC generates machine code on the first lookup: do it here, so that
  // compile() has compiled everything and the first call is not slower.
  for (const FunctionSignature &function : functions) {
    if (!function.unsupportedReason.empty())
      continue;
    Expected<void (*)(void **)> packed =
        impl->engine->lookupPacked("_mlir_ciface_" + function.name);
    if (!packed)
      return fail("cannot find the compiled function '" + function.name +
                  "': " + toString(packed.takeError()));
    impl->packedFunctions.try_emplace(function.name, *packed);
  }
  return Error::success();
}

void PreparedCall::invoke() const {
  function(const_cast<void **>(packedArguments.data()));
}

/// Appends the memref descriptor of a dense row-major buffer.
static void appendDescriptor(std::vector<std::vector<int64_t>> &descriptors,
                             ArrayRef<int64_t> shape, const void *data) {
  std::vector<int64_t> descriptor;
  int64_t pointer = static_cast<int64_t>(reinterpret_cast<intptr_t>(data));
  descriptor.push_back(pointer); // allocated
  descriptor.push_back(pointer); // aligned
  descriptor.push_back(0);       // offset
  descriptor.insert(descriptor.end(), shape.begin(), shape.end());
  SmallVector<int64_t, 4> strides(shape.size(), 1);
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  descriptor.insert(descriptor.end(), strides.begin(), strides.end());
  descriptors.push_back(std::move(descriptor));
}

Expected<PreparedCall> Runner::prepare(StringRef name,
                                       ArrayRef<ConstTensorView> inputs,
                                       ArrayRef<TensorView> outputs) {
  if (Error err = checkInputs(name, inputs))
    return std::move(err);
  const FunctionSignature &f = **lookupFunction(name);
  if (outputs.size() != f.results.size())
    return createStringError("function '" + name + "' has " +
                             Twine(f.results.size()) + " result" +
                             (f.results.size() == 1 ? "" : "s") + ", got " +
                             Twine(outputs.size()) + " output buffers");
  for (auto [i, spec, output] : llvm::enumerate(f.results, outputs)) {
    if (!spec.hasStaticShape())
      return createStringError(
          "result " + Twine(i) + " of '" + name + "' has type " +
          spec.typeString +
          ": results must have static shapes, because the caller allocates "
          "every output buffer");
    if (ArrayRef<int64_t>(spec.shape) != ArrayRef<int64_t>(output.shape) ||
        spec.elementType != output.elementType)
      return createStringError(
          "output " + Twine(i) + " of '" + name + "' must be " +
          formatTensorType(spec.elementType, spec.shape) + ", got " +
          formatTensorType(output.elementType, output.shape));
  }

  if (Error err = compile())
    return std::move(err);

  auto cached = impl->packedFunctions.find(name);
  if (cached == impl->packedFunctions.end()) {
    std::string symbol = ("_mlir_ciface_" + name).str();
    Expected<void (*)(void **)> packed = impl->engine->lookupPacked(symbol);
    if (!packed)
      return createStringError("cannot find the compiled function '" + symbol +
                               "': " + toString(packed.takeError()));
    cached = impl->packedFunctions.try_emplace(name, *packed).first;
  }

  PreparedCall call;
  call.function = cached->second;
  // Descriptors first, so that the pointers taken below stay valid.
  for (auto [spec, input] : llvm::zip_equal(f.inputs, inputs))
    if (spec.isTensor)
      appendDescriptor(call.descriptors, input.shape, input.data);
  for (const TensorView &output : outputs)
    appendDescriptor(call.descriptors, output.shape, output.data);
  for (std::vector<int64_t> &descriptor : call.descriptors)
    call.descriptorPointers.push_back(descriptor.data());

  size_t nextDescriptor = 0;
  for (auto [spec, input] : llvm::zip_equal(f.inputs, inputs)) {
    if (spec.isTensor)
      call.packedArguments.push_back(
          &call.descriptorPointers[nextDescriptor++]);
    else
      call.packedArguments.push_back(const_cast<void *>(input.data));
  }
  for (size_t i = 0; i < outputs.size(); ++i)
    call.packedArguments.push_back(&call.descriptorPointers[nextDescriptor++]);
  return call;
}

Error Runner::invoke(StringRef name, ArrayRef<ConstTensorView> inputs,
                     ArrayRef<TensorView> outputs) {
  Expected<PreparedCall> call = prepare(name, inputs, outputs);
  if (!call)
    return call.takeError();
  call->invoke();
  return takeDeviceError();
}

Error Runner::takeDeviceError() {
  if (impl->options.device != "cuda")
    return Error::success();
  if (Error err = cuda::takeError())
    return createStringError("CUDA error: " + toString(std::move(err)));
  return Error::success();
}

Expected<std::vector<HostTensor>>
Runner::run(StringRef name, ArrayRef<ConstTensorView> inputs) {
  if (Error err = checkInputs(name, inputs))
    return std::move(err);
  Expected<std::vector<HostTensor>> results = allocateResults(name);
  if (!results)
    return results.takeError();
  SmallVector<TensorView> outputs;
  for (HostTensor &result : *results)
    outputs.push_back(result.view());
  if (Error err = invoke(name, inputs, outputs))
    return std::move(err);
  return results;
}
