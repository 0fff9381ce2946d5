//===- HostTensor.h - host-side tensors for the kvmerge runtime -*- C++ -*-===//
//
// The buffers that kvmerge-run and the Python bindings hand to JIT-compiled
// functions: an element type, a shape, and dense row-major (C order) bytes.
//
//  * `HostTensor` owns its bytes.
//  * `TensorView` / `ConstTensorView` borrow them (e.g. from a NumPy array),
//    so callers that already hold a buffer can run without a copy.
//
// Also the IREE-style textual form used on the command line:
//   "4x8xf32=1,2,3,..."  "2xi32=7" (splat)  "f32=0.5" (rank 0)
//   "2x2xf32=[1 2][3 4]" (brackets are separators)  "4xf32" (zeros).
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_HOSTTENSOR_H
#define KVMERGE_RUNTIME_HOSTTENSOR_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

namespace kvmerge::runtime {

/// Element types the runtime can exchange with compiled code.
enum class ElementType { F16, BF16, F32, F64, I8, I32, I64 };

/// "f32", "bf16", "i32", ...  (the MLIR spelling).
llvm::StringRef stringifyElementType(ElementType type);
/// Inverse of `stringifyElementType`.
std::optional<ElementType> parseElementType(llvm::StringRef name);
/// Bytes per element.
size_t getElementByteWidth(ElementType type);
bool isFloatElementType(ElementType type);

/// Number of elements of `shape`, or an error on a negative dimension or
/// when the product (or the byte size with `elementBytes`) overflows.
llvm::Expected<int64_t> getNumElements(llvm::ArrayRef<int64_t> shape,
                                       size_t elementBytes = 1);

/// "4x8xf32", "f32" for rank 0.
std::string formatTensorType(ElementType type, llvm::ArrayRef<int64_t> shape);

/// A borrowed, dense, C-ordered buffer that compiled code may write to.
struct TensorView {
  ElementType elementType = ElementType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  void *data = nullptr;
};

/// A borrowed, dense, C-ordered buffer that compiled code only reads.
struct ConstTensorView {
  ElementType elementType = ElementType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  const void *data = nullptr;

  ConstTensorView() = default;
  ConstTensorView(ElementType elementType, llvm::ArrayRef<int64_t> shape,
                  const void *data)
      : elementType(elementType), shape(shape.begin(), shape.end()),
        data(data) {}
  ConstTensorView(const TensorView &view)
      : elementType(view.elementType), shape(view.shape), data(view.data) {}

  int64_t getNumElements() const;
  size_t getByteSize() const;
};

/// A tensor that owns its bytes (zero-initialized on construction).
/// Movable; copy explicitly with `clone`.
class HostTensor {
public:
  HostTensor() = default;
  /// Allocates a zero-filled tensor; fails (rather than aborting) if the size
  /// overflows or the memory cannot be allocated.
  static llvm::Expected<HostTensor> allocate(ElementType elementType,
                                             llvm::ArrayRef<int64_t> shape);
  /// A deep copy.
  llvm::Expected<HostTensor> clone() const;

  ElementType getElementType() const { return elementType; }
  llvm::ArrayRef<int64_t> getShape() const { return shape; }
  int64_t getRank() const { return static_cast<int64_t>(shape.size()); }
  int64_t getNumElements() const;
  size_t getByteSize() const { return byteSize; }

  uint8_t *data() { return storage.get(); }
  const uint8_t *data() const { return storage.get(); }
  llvm::MutableArrayRef<uint8_t> bytes() { return {data(), byteSize}; }
  llvm::ArrayRef<uint8_t> bytes() const { return {data(), byteSize}; }

  TensorView view() { return {elementType, shape, data()}; }
  ConstTensorView view() const { return {elementType, shape, data()}; }
  operator ConstTensorView() const { return view(); }

  /// "4x8xf32".
  std::string getTypeString() const {
    return formatTensorType(elementType, shape);
  }

private:
  struct FreeDeleter {
    void operator()(uint8_t *p) const { std::free(p); }
  };

  ElementType elementType = ElementType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  std::unique_ptr<uint8_t, FreeDeleter> storage;
  size_t byteSize = 0;
};

/// Parses "4x8xf32=1,2,3", "2xi32=7" (splat), "f32=1" (rank 0), "4xf32"
/// (zeros). Values are separated by commas, whitespace, or brackets; floats
/// accept decimal, hex, `inf`, `nan`, and are rounded to the element type
/// (nearest-even, so f16/bf16 values round correctly); integers must be in
/// range of the element type.
llvm::Expected<HostTensor> parseTensorLiteral(llvm::StringRef text);

/// Formats like IREE: "2x3xf32=[1 2 3][4 5 6]", "3xi32=1 2 3", "f32=0.5".
/// Prints at most `maxElements` elements, then "...".
std::string formatTensor(ConstTensorView tensor, int64_t maxElements = 1024);

/// Reads element `index` of `tensor` as a double (integers converted).
double getElementAsDouble(ConstTensorView tensor, int64_t index);

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_HOSTTENSOR_H
