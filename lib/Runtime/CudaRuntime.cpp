//===- CudaRuntime.cpp - the CUDA driver runtime for the JIT ---------------===//
//
// See include/kvmerge/Runtime/CudaRuntime.h. The mgpu* ABI itself lives in
// CudaDriver.cpp (LLVM-free, shared with ahead-of-time artifacts); this file
// only adapts it to llvm::Error for the Runner.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/CudaRuntime.h"
#include "kvmerge/Runtime/CudaDriver.h"

using namespace llvm;

namespace kvmerge::runtime::cuda {

Error initialize() {
  const cudadriver::InitStatus &status = cudadriver::initialize();
  if (status.error.empty())
    return Error::success();
  if (status.noDriver)
    return createStringError(
        status.error + "; --device=cuda needs an NVIDIA GPU with its driver");
  return createStringError(status.error);
}

std::string chip() { return cudadriver::chip(); }
std::string deviceName() { return cudadriver::deviceName(); }

Error takeError() {
  std::string message = cudadriver::takeError();
  if (message.empty())
    return Error::success();
  return createStringError(message);
}

std::vector<std::pair<StringRef, void *>> symbols() {
  std::vector<std::pair<StringRef, void *>> result;
  for (const cudadriver::Symbol &symbol : cudadriver::symbols())
    result.emplace_back(symbol.name, symbol.address);
  return result;
}

} // namespace kvmerge::runtime::cuda
