//===- Runner.h - load, lower, JIT and call kvmerge functions ---*- C++ -*-===//
//
// The library behind kvmerge-run (and, later, the Python bindings):
//
//   auto runner = Runner::loadFile("model.mlir");          // parse + verify
//   const FunctionSignature *f = (*runner)->lookupFunction("f");
//   (*runner)->checkInputs("f", inputs);                   // arity/shape/type
//   auto results = (*runner)->run("f", inputs);            // lower, JIT, call
//
// A module is lowered once with kvmerge::buildLowerToLLVMPipeline (tensor
// results become caller-allocated out-params; `_mlir_ciface_NAME` wrappers
// take memref descriptors) and JIT-compiled with mlir::ExecutionEngine at
// -O3. Every input is passed as a borrowed, dense, C-ordered buffer; function
// arguments are marked `bufferization.writable = false` before bufferizing,
// so compiled code never writes into an input. Outputs are allocated by the
// caller; results must therefore have static shapes.
//
// Errors are returned as llvm::Error with a complete message; the library
// never prints or exits.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_RUNNER_H
#define KVMERGE_RUNTIME_RUNNER_H

#include "kvmerge/Runtime/HostTensor.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class MemoryBuffer;
} // namespace llvm

namespace kvmerge::runtime {

/// Marks a dynamic dimension in `ValueSpec::shape` (same value as
/// mlir::ShapedType::kDynamic).
inline constexpr int64_t kDynamicDim = std::numeric_limits<int64_t>::min();

/// One argument or result of a function, as the runtime passes it.
struct ValueSpec {
  /// True for a ranked tensor (passed as a memref descriptor); false for a
  /// scalar argument (passed by value; `shape` is empty).
  bool isTensor = true;
  ElementType elementType = ElementType::F32;
  /// Static sizes, or kDynamicDim.
  llvm::SmallVector<int64_t, 4> shape;
  /// The MLIR spelling, e.g. "tensor<4x?xf32>" or "f32".
  std::string typeString;

  bool hasStaticShape() const;
  /// Whether a concrete shape matches (same rank; static dims equal).
  bool matchesShape(llvm::ArrayRef<int64_t> concrete) const;
};

/// A public function of the module.
struct FunctionSignature {
  std::string name;
  llvm::SmallVector<ValueSpec, 4> inputs;
  llvm::SmallVector<ValueSpec, 2> results;
  /// Non-empty when the function cannot be run (private, unsupported
  /// argument or result types); explains why.
  std::string unsupportedReason;
};

struct RunnerOptions {
  /// "cpu" (JIT on the host) or "cuda" (--kvmerge-lower-to-nvvm, PTX loaded
  /// through the CUDA driver opened at run time; see CudaRuntime.h).
  std::string device = "cpu";
  /// LLVM optimization level for the JIT (0-3).
  unsigned optLevel = 3;
  /// Options of the CPU pipeline (`--kvmerge-lower-to-llvm`) in its textual
  /// form, e.g. "fuse-merge=false".
  std::string pipelineOptions;
};

class Runner;

/// MLIR's parser recurses once per nesting level of brackets, so adversarial
/// input like `[[[[...` overflows the stack (found by fuzzing). Every entry
/// point that parses untrusted text calls this first: an error when ( [ { <
/// nest deeper than `limit` (string literals and // comments excluded).
llvm::Error checkNestingDepth(llvm::StringRef text, unsigned limit = 256);

/// Runs `fn` on a new thread with a 1 GiB stack (reserved; pages are used
/// only as deep as the recursion goes) and waits for it. MLIR's parser also
/// recurses once per operator of an affine expression (`- - - ... d0`,
/// `d0 + d0 + ...`), which no bracket count bounds: 20 000 operators
/// overflowed the default 8 MiB stack, ~2.5 million fit in this one.
void runOnLargeStack(llvm::function_ref<void()> fn);

/// A call with bound arguments, ready to be invoked many times (e.g. by a
/// benchmark loop) without re-checking or re-building memref descriptors.
/// The borrowed buffers must outlive it. Movable, not copyable.
class PreparedCall {
public:
  PreparedCall() = default;
  PreparedCall(PreparedCall &&) = default;
  PreparedCall &operator=(PreparedCall &&) = default;
  PreparedCall(const PreparedCall &) = delete;
  PreparedCall &operator=(const PreparedCall &) = delete;

  /// Calls the compiled function once.
  void invoke() const;

private:
  friend class Runner;
  void (*function)(void **) = nullptr;
  /// One descriptor per memref argument: {allocated, aligned, offset,
  /// sizes[rank], strides[rank]} as 64-bit words.
  std::vector<std::vector<int64_t>> descriptors;
  /// The C interface takes each descriptor by pointer...
  std::vector<void *> descriptorPointers;
  /// ...and the packed wrapper takes a pointer to every argument.
  std::vector<void *> packedArguments;
};

class Runner {
public:
  ~Runner();
  Runner(const Runner &) = delete;
  Runner &operator=(const Runner &) = delete;

  /// Parses and verifies an .mlir file ("-" reads stdin). Parse errors come
  /// back as the MLIR diagnostics, with file:line:col.
  static llvm::Expected<std::unique_ptr<Runner>>
  loadFile(llvm::StringRef path, const RunnerOptions &options = {});
  /// Same, from text; `bufferName` labels diagnostics.
  static llvm::Expected<std::unique_ptr<Runner>>
  loadSource(llvm::StringRef source, llvm::StringRef bufferName = "<source>",
             const RunnerOptions &options = {});

  /// Every function defined in the module (runnable or not), in order.
  llvm::ArrayRef<FunctionSignature> getFunctions() const { return functions; }
  /// The runnable function `name`, or an error naming the available ones or
  /// saying why it cannot be run.
  llvm::Expected<const FunctionSignature *>
  lookupFunction(llvm::StringRef name) const;

  /// Checks arity, rank, static dimensions and element type of `inputs`
  /// against the function's arguments.
  llvm::Error checkInputs(llvm::StringRef name,
                          llvm::ArrayRef<ConstTensorView> inputs) const;
  /// Zero-filled host tensors for every result (results need static shapes).
  llvm::Expected<std::vector<HostTensor>>
  allocateResults(llvm::StringRef name) const;

  /// Lowers the module to LLVM and JIT-compiles it. Idempotent; `prepare`
  /// and `run` call it on first use.
  llvm::Error compile();

  /// Binds inputs and caller-allocated outputs (one per result, exactly the
  /// result's shape and type) for repeated invocation.
  llvm::Expected<PreparedCall> prepare(llvm::StringRef name,
                                       llvm::ArrayRef<ConstTensorView> inputs,
                                       llvm::ArrayRef<TensorView> outputs);
  /// Runs once into caller-allocated outputs.
  llvm::Error invoke(llvm::StringRef name,
                     llvm::ArrayRef<ConstTensorView> inputs,
                     llvm::ArrayRef<TensorView> outputs);
  /// Runs once and returns freshly allocated results.
  llvm::Expected<std::vector<HostTensor>>
  run(llvm::StringRef name, llvm::ArrayRef<ConstTensorView> inputs);

  /// For --device=cuda: the first CUDA error since the last call (kernel
  /// launches and copies cannot report errors themselves). Call after
  /// PreparedCall::invoke. Always success on the cpu device.
  llvm::Error takeDeviceError();

private:
  struct Impl;
  explicit Runner(std::unique_ptr<Impl> impl);
  static llvm::Expected<std::unique_ptr<Runner>>
  load(std::unique_ptr<llvm::MemoryBuffer> buffer,
       const RunnerOptions &options);

  std::unique_ptr<Impl> impl;
  std::vector<FunctionSignature> functions;
};

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_RUNNER_H
