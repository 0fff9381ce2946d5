//===- fuzz_npy.cpp - libFuzzer target: .npy reader and tensor literals ----===//
//
// kvmerge-fuzz-npy: the first byte picks the entry point
//   even: parseNpy(rest, expectedType from the second byte)
//   odd:  parseTensorLiteral(rest as text)
// and, when parsing succeeds, checks round trips:
//   writeNpy(parsed) parses back to the same type, shape and bytes;
//   formatTensor / getElementAsDouble do not crash.
// Errors are expected; a crash, sanitizer report or round-trip mismatch
// (trap) is a bug.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/HostTensor.h"
#include "kvmerge/Runtime/Npy.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <cstring>
#include <string>

using namespace kvmerge::runtime;

static void check(bool ok, const char *what) {
  if (!ok) {
    llvm::errs() << "kvmerge-fuzz-npy: " << what << "\n";
    __builtin_trap();
  }
}

static void roundTrip(const HostTensor &tensor) {
  (void)formatTensor(tensor, 64);
  int64_t n = tensor.getNumElements();
  for (int64_t i = 0; i < n && i < 64; ++i)
    (void)getElementAsDouble(tensor, i);

  std::string bytes;
  {
    llvm::raw_string_ostream os(bytes);
    writeNpy(os, tensor);
  }
  llvm::Expected<HostTensor> back =
      parseNpy(llvm::ArrayRef<uint8_t>(
                   reinterpret_cast<const uint8_t *>(bytes.data()),
                   bytes.size()),
               "<roundtrip>", tensor.getElementType());
  if (!back) {
    llvm::errs() << "round trip failed: " << llvm::toString(back.takeError())
                 << "\n";
    check(false, "writeNpy output does not parse back");
  }
  check(back->getElementType() == tensor.getElementType(),
        "round trip changed the element type");
  check(back->getShape() == tensor.getShape(), "round trip changed the shape");
  check(back->getByteSize() == tensor.getByteSize() &&
            (tensor.getByteSize() == 0 ||
             std::memcmp(back->data(), tensor.data(), tensor.getByteSize()) ==
                 0),
        "round trip changed the data");
}

// "100000x100000xf32" (zeros) is a legitimate 40 GB request, not a bug; skip
// literals that declare more than 2^20 elements. Products that overflow 64
// bits are kept: the parser must reject them with an error.
static bool declaresHugeTensor(llvm::StringRef text) {
  llvm::StringRef type = text.split('=').first;
  uint64_t product = 1;
  bool overflow = false;
  llvm::SmallVector<llvm::StringRef> parts;
  type.split(parts, 'x');
  for (llvm::StringRef part : parts) {
    part = part.trim();
    uint64_t dim;
    if (part.empty() || part.getAsInteger(10, dim))
      continue;
    if (__builtin_mul_overflow(product, dim, &product))
      overflow = true;
  }
  return !overflow && product > (uint64_t(1) << 20);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint8_t selector = data[0], typeByte = data[1];
  llvm::ArrayRef<uint8_t> rest(data + 2, size - 2);

  if ((selector & 1) == 0) {
    std::optional<ElementType> expected;
    if (typeByte < 7 * 16)
      expected = static_cast<ElementType>(typeByte % 7);
    llvm::Expected<HostTensor> tensor = parseNpy(rest, "<fuzz>", expected);
    if (!tensor) {
      llvm::consumeError(tensor.takeError());
      return 0;
    }
    roundTrip(*tensor);
  } else {
    llvm::StringRef text(reinterpret_cast<const char *>(rest.data()),
                         rest.size());
    if (declaresHugeTensor(text))
      return 0;
    llvm::Expected<HostTensor> tensor = parseTensorLiteral(text);
    if (!tensor) {
      llvm::consumeError(tensor.takeError());
      return 0;
    }
    roundTrip(*tensor);
  }
  return 0;
}
