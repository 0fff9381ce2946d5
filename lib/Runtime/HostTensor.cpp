//===- HostTensor.cpp - host-side tensors for the kvmerge runtime ---------===//

#include "kvmerge/Runtime/HostTensor.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/APInt.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace llvm;
using namespace kvmerge::runtime;

static_assert(llvm::endianness::native == llvm::endianness::little,
              "the kvmerge runtime assumes a little-endian host");

StringRef kvmerge::runtime::stringifyElementType(ElementType type) {
  switch (type) {
  case ElementType::F16:
    return "f16";
  case ElementType::BF16:
    return "bf16";
  case ElementType::F32:
    return "f32";
  case ElementType::F64:
    return "f64";
  case ElementType::I8:
    return "i8";
  case ElementType::I32:
    return "i32";
  case ElementType::I64:
    return "i64";
  }
  llvm_unreachable("unknown element type");
}

std::optional<ElementType> kvmerge::runtime::parseElementType(StringRef name) {
  for (ElementType type :
       {ElementType::F16, ElementType::BF16, ElementType::F32, ElementType::F64,
        ElementType::I8, ElementType::I32, ElementType::I64})
    if (name == stringifyElementType(type))
      return type;
  return std::nullopt;
}

size_t kvmerge::runtime::getElementByteWidth(ElementType type) {
  switch (type) {
  case ElementType::I8:
    return 1;
  case ElementType::F16:
  case ElementType::BF16:
    return 2;
  case ElementType::F32:
  case ElementType::I32:
    return 4;
  case ElementType::F64:
  case ElementType::I64:
    return 8;
  }
  llvm_unreachable("unknown element type");
}

bool kvmerge::runtime::isFloatElementType(ElementType type) {
  switch (type) {
  case ElementType::F16:
  case ElementType::BF16:
  case ElementType::F32:
  case ElementType::F64:
    return true;
  default:
    return false;
  }
}

Expected<int64_t> kvmerge::runtime::getNumElements(ArrayRef<int64_t> shape,
                                                   size_t elementBytes) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0)
      return createStringError("negative dimension %lld",
                               static_cast<long long>(dim));
    if (MulOverflow(count, dim, count))
      return createStringError("element count overflows 64 bits");
  }
  int64_t bytes;
  if (MulOverflow(count, static_cast<int64_t>(elementBytes), bytes) ||
      static_cast<uint64_t>(bytes) > std::numeric_limits<size_t>::max())
    return createStringError("byte size overflows");
  return count;
}

std::string kvmerge::runtime::formatTensorType(ElementType type,
                                               ArrayRef<int64_t> shape) {
  std::string result;
  raw_string_ostream os(result);
  for (int64_t dim : shape) {
    if (dim < 0)
      os << "?";
    else
      os << dim;
    os << "x";
  }
  os << stringifyElementType(type);
  return result;
}

//===----------------------------------------------------------------------===//
// Views and HostTensor
//===----------------------------------------------------------------------===//

int64_t ConstTensorView::getNumElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

size_t ConstTensorView::getByteSize() const {
  return static_cast<size_t>(getNumElements()) *
         getElementByteWidth(elementType);
}

Expected<HostTensor> HostTensor::allocate(ElementType elementType,
                                          ArrayRef<int64_t> shape) {
  size_t width = getElementByteWidth(elementType);
  Expected<int64_t> count = runtime::getNumElements(shape, width);
  if (!count)
    return count.takeError();
  HostTensor tensor;
  tensor.elementType = elementType;
  tensor.shape.assign(shape.begin(), shape.end());
  tensor.byteSize = static_cast<size_t>(*count) * width;
  // calloc (not std::vector) so that an impossible size is an error rather
  // than an abort; at least one byte so that data() is never null.
  tensor.storage.reset(static_cast<uint8_t *>(
      std::calloc(std::max<size_t>(tensor.byteSize, 1), 1)));
  if (!tensor.storage)
    return createStringError("cannot allocate %zu bytes for %s",
                             tensor.byteSize,
                             formatTensorType(elementType, shape).c_str());
  return tensor;
}

Expected<HostTensor> HostTensor::clone() const {
  Expected<HostTensor> copy = allocate(elementType, shape);
  if (copy && byteSize)
    std::memcpy(copy->data(), data(), byteSize);
  return copy;
}

int64_t HostTensor::getNumElements() const {
  return static_cast<int64_t>(byteSize / getElementByteWidth(elementType));
}

//===----------------------------------------------------------------------===//
// Element conversion
//===----------------------------------------------------------------------===//

static const fltSemantics &getSemantics(ElementType type) {
  switch (type) {
  case ElementType::F16:
    return APFloat::IEEEhalf();
  case ElementType::BF16:
    return APFloat::BFloat();
  case ElementType::F32:
    return APFloat::IEEEsingle();
  case ElementType::F64:
    return APFloat::IEEEdouble();
  default:
    llvm_unreachable("not a float type");
  }
}

/// Parses one textual value and stores it, in the element type, at `dst`.
static Error storeElement(ElementType type, StringRef token, uint8_t *dst) {
  size_t width = getElementByteWidth(type);
  if (isFloatElementType(type)) {
    APFloat value(getSemantics(type));
    Expected<APFloat::opStatus> status =
        value.convertFromString(token, APFloat::rmNearestTiesToEven);
    if (!status) {
      consumeError(status.takeError());
      return createStringError("invalid %s value '%s'",
                               stringifyElementType(type).data(),
                               token.str().c_str());
    }
    uint64_t bits = value.bitcastToAPInt().getZExtValue();
    std::memcpy(dst, &bits, width); // little-endian: low bytes first
    return Error::success();
  }

  StringRef digits = token;
  digits.consume_front("+");
  int64_t value;
  if (digits.getAsInteger(10, value))
    return createStringError("invalid %s value '%s'",
                             stringifyElementType(type).data(),
                             token.str().c_str());
  unsigned bits = static_cast<unsigned>(width * 8);
  if (!isIntN(bits, value))
    return createStringError("value %s is out of range for %s",
                             token.str().c_str(),
                             stringifyElementType(type).data());
  std::memcpy(dst, &value, width); // little-endian truncation
  return Error::success();
}

double kvmerge::runtime::getElementAsDouble(ConstTensorView tensor,
                                            int64_t index) {
  const uint8_t *p = static_cast<const uint8_t *>(tensor.data) +
                     index * getElementByteWidth(tensor.elementType);
  switch (tensor.elementType) {
  case ElementType::F16:
  case ElementType::BF16: {
    uint16_t bits;
    std::memcpy(&bits, p, 2);
    APFloat value(getSemantics(tensor.elementType), APInt(16, bits));
    bool losesInfo;
    value.convert(APFloat::IEEEdouble(), APFloat::rmNearestTiesToEven,
                  &losesInfo);
    return value.convertToDouble();
  }
  case ElementType::F32: {
    float value;
    std::memcpy(&value, p, 4);
    return value;
  }
  case ElementType::F64: {
    double value;
    std::memcpy(&value, p, 8);
    return value;
  }
  case ElementType::I8:
    return static_cast<int8_t>(*p);
  case ElementType::I32: {
    int32_t value;
    std::memcpy(&value, p, 4);
    return value;
  }
  case ElementType::I64: {
    int64_t value;
    std::memcpy(&value, p, 8);
    return static_cast<double>(value);
  }
  }
  llvm_unreachable("unknown element type");
}

static void printElement(raw_ostream &os, ConstTensorView tensor,
                         int64_t index) {
  const uint8_t *p = static_cast<const uint8_t *>(tensor.data) +
                     index * getElementByteWidth(tensor.elementType);
  switch (tensor.elementType) {
  case ElementType::I8:
    os << static_cast<int>(static_cast<int8_t>(*p));
    return;
  case ElementType::I32: {
    int32_t value;
    std::memcpy(&value, p, 4);
    os << value;
    return;
  }
  case ElementType::I64: {
    int64_t value;
    std::memcpy(&value, p, 8);
    os << value;
    return;
  }
  default:
    break;
  }
  double value = getElementAsDouble(tensor, index);
  if (std::isnan(value))
    os << "nan";
  else if (std::isinf(value))
    os << (value < 0 ? "-inf" : "inf");
  else
    os << format("%g", value);
}

//===----------------------------------------------------------------------===//
// Textual form
//===----------------------------------------------------------------------===//

Expected<HostTensor> kvmerge::runtime::parseTensorLiteral(StringRef text) {
  auto [typePart, valuePart] = text.split('=');
  bool hasValues = typePart.size() != text.size();
  typePart = typePart.trim();

  SmallVector<StringRef> pieces;
  typePart.split(pieces, 'x');
  StringRef typeName = pieces.pop_back_val();
  std::optional<ElementType> type = parseElementType(typeName);
  if (!type)
    return createStringError(
        "unknown element type '%s' in '%s' (expected f16, bf16, f32, f64, "
        "i8, i32 or i64, as in 4x8xf32=...)",
        typeName.str().c_str(), typePart.str().c_str());
  SmallVector<int64_t, 4> shape;
  for (StringRef piece : pieces) {
    int64_t dim;
    if (piece == "?")
      return createStringError("dynamic dimension '?' in '%s': give the "
                               "concrete size of every dimension",
                               typePart.str().c_str());
    if (piece.getAsInteger(10, dim) || dim < 0)
      return createStringError("invalid dimension '%s' in '%s'",
                               piece.str().c_str(), typePart.str().c_str());
    shape.push_back(dim);
  }

  Expected<HostTensor> tensor = HostTensor::allocate(*type, shape);
  if (!tensor)
    return tensor.takeError();
  if (!hasValues)
    return tensor; // zeros

  SmallVector<StringRef> tokens;
  SplitString(valuePart, tokens, " \t\r\n,[]");
  int64_t numElements = tensor->getNumElements();
  size_t width = getElementByteWidth(*type);
  if (tokens.size() == 1 && numElements != 1) {
    // Splat: parse once, replicate.
    if (numElements == 0)
      return tensor;
    if (Error err = storeElement(*type, tokens[0], tensor->data()))
      return std::move(err);
    for (int64_t i = 1; i < numElements; ++i)
      std::memcpy(tensor->data() + i * width, tensor->data(), width);
    return tensor;
  }
  if (static_cast<int64_t>(tokens.size()) != numElements)
    return createStringError(
        "'%s' has %lld element%s but %zu value%s given (give all of "
        "them, or one value to fill the tensor)",
        typePart.str().c_str(), static_cast<long long>(numElements),
        numElements == 1 ? "" : "s", tokens.size(),
        tokens.size() == 1 ? " was" : "s were");
  for (int64_t i = 0; i < numElements; ++i)
    if (Error err = storeElement(*type, tokens[i], tensor->data() + i * width))
      return std::move(err);
  return tensor;
}

std::string kvmerge::runtime::formatTensor(ConstTensorView tensor,
                                           int64_t maxElements) {
  std::string result;
  raw_string_ostream os(result);
  os << formatTensorType(tensor.elementType, tensor.shape) << "=";
  int64_t numElements = tensor.getNumElements();
  int64_t rank = static_cast<int64_t>(tensor.shape.size());
  if (rank == 0) {
    printElement(os, tensor, 0);
    return result;
  }
  if (numElements == 0)
    return result;

  // Row-major walk; open/close brackets for every dimension but the last
  // (IREE style: a 1-D tensor prints without brackets).
  SmallVector<int64_t, 4> index(rank, 0);
  int64_t printed = 0;
  for (int64_t linear = 0; linear < numElements; ++linear) {
    // Open brackets for dimensions whose inner indices are all zero.
    int64_t opens = 0;
    for (int64_t d = rank - 1; d >= 1 && index[d] == 0; --d)
      ++opens;
    for (int64_t i = 0; i < opens; ++i)
      os << "[";
    if (index[rank - 1] != 0)
      os << " ";
    if (printed == maxElements) {
      os << "...";
      break;
    }
    printElement(os, tensor, linear);
    ++printed;
    // Advance and close brackets.
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++index[d] < tensor.shape[d])
        break;
      index[d] = 0;
      if (d >= 1)
        os << "]";
    }
  }
  return result;
}
