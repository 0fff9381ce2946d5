//===- Npy.cpp - NumPy .npy reader and writer -----------------------------===//
//
// Format reference: numpy/lib/format.py ("NEP 1"). Layout:
//   "\x93NUMPY" major minor  header_len (u16 LE for 1.x, u32 LE for 2.x/3.x)
//   header: a Python dict literal, e.g.
//     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
//   padded with spaces and a final '\n' so the data starts 64-byte aligned;
//   then the raw array bytes.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/Npy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstring>
#include <map>

using namespace llvm;
using namespace kvmerge::runtime;

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

/// One value of the header dict. Only what .npy headers contain.
struct PyValue {
  enum class Kind { String, Bool, Int, Tuple } kind = Kind::Int;
  std::string string;
  bool boolean = false;
  int64_t integer = 0;
  SmallVector<int64_t, 4> tuple;
};

/// A strict parser for the Python dict literal of a .npy header. Every read
/// is bounds checked; anything unexpected is an error.
class HeaderParser {
public:
  explicit HeaderParser(StringRef text) : text(text) {}

  Expected<std::map<std::string, PyValue>> parseDict() {
    std::map<std::string, PyValue> dict;
    if (Error err = expect('{'))
      return std::move(err);
    while (true) {
      skipSpace();
      if (consume('}'))
        break;
      Expected<PyValue> key = parseValue();
      if (!key)
        return key.takeError();
      if (key->kind != PyValue::Kind::String)
        return error("dict keys must be strings");
      if (Error err = expect(':'))
        return std::move(err);
      Expected<PyValue> value = parseValue();
      if (!value)
        return value.takeError();
      if (!dict.emplace(key->string, std::move(*value)).second)
        return error("duplicate key '" + key->string + "'");
      skipSpace();
      if (consume(','))
        continue;
      if (Error err = expect('}'))
        return std::move(err);
      break;
    }
    skipSpace();
    if (pos != text.size())
      return error("unexpected text after the header dict");
    return dict;
  }

private:
  Error error(const Twine &message) {
    return createStringError("malformed header (" + message + " at offset " +
                             Twine(pos) + ")");
  }
  void skipSpace() {
    while (pos < text.size() && isSpace(text[pos]))
      ++pos;
  }
  bool consume(char c) {
    if (pos < text.size() && text[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  Error expect(char c) {
    skipSpace();
    if (consume(c))
      return Error::success();
    return error(std::string("expected '") + c + "'");
  }

  Expected<int64_t> parseInt() {
    size_t start = pos;
    if (pos < text.size() && (text[pos] == '-' || text[pos] == '+'))
      ++pos;
    while (pos < text.size() && isDigit(text[pos]))
      ++pos;
    StringRef digits = text.slice(start, pos);
    int64_t value;
    if (digits.getAsInteger(10, value))
      return error("invalid or out-of-range integer '" + digits + "'");
    consume('L'); // Python 2 era headers wrote 3L.
    return value;
  }

  Expected<PyValue> parseValue() {
    skipSpace();
    if (pos >= text.size())
      return error("unexpected end of header");
    PyValue value;
    char c = text[pos];
    if (c == '\'' || c == '"') {
      ++pos;
      size_t start = pos;
      while (pos < text.size() && text[pos] != c) {
        if (text[pos] == '\\')
          return error("escape sequences in strings are not supported");
        ++pos;
      }
      if (pos >= text.size())
        return error("unterminated string");
      value.kind = PyValue::Kind::String;
      value.string = text.slice(start, pos).str();
      ++pos;
      return value;
    }
    if (text.substr(pos).starts_with("True") ||
        text.substr(pos).starts_with("False")) {
      value.kind = PyValue::Kind::Bool;
      value.boolean = text[pos] == 'T';
      pos += value.boolean ? 4 : 5;
      return value;
    }
    if (c == '-' || c == '+' || isDigit(c)) {
      Expected<int64_t> integer = parseInt();
      if (!integer)
        return integer.takeError();
      value.kind = PyValue::Kind::Int;
      value.integer = *integer;
      return value;
    }
    if (c == '(') {
      ++pos;
      value.kind = PyValue::Kind::Tuple;
      while (true) {
        skipSpace();
        if (consume(')'))
          break;
        Expected<int64_t> integer = parseInt();
        if (!integer)
          return integer.takeError();
        value.tuple.push_back(*integer);
        skipSpace();
        if (consume(','))
          continue;
        if (Error err = expect(')'))
          return std::move(err);
        break;
      }
      return value;
    }
    if (c == '[' || c == '{')
      return error("nested value (structured dtypes are not supported)");
    return error(std::string("unexpected character '") + c + "'");
  }

  StringRef text;
  size_t pos = 0;
};

std::string formatShape(ArrayRef<int64_t> shape) {
  std::string result = "(";
  for (auto [i, dim] : llvm::enumerate(shape))
    result += (i ? ", " : "") + std::to_string(dim);
  if (shape.size() == 1)
    result += ",";
  return result + ")";
}

Expected<ElementType> parseDescr(StringRef descr, StringRef name,
                                 std::optional<ElementType> expectedType) {
  if (descr.size() >= 2 && descr[0] == '>' && descr.substr(1) != "i1" &&
      descr.substr(1) != "u1")
    return createStringError(
        "%s: big-endian dtype '%s' is not supported (save it with "
        "arr.astype(arr.dtype.newbyteorder('<')))",
        name.str().c_str(), descr.str().c_str());
  StringRef body = descr;
  if (!body.empty() &&
      (body[0] == '<' || body[0] == '|' || body[0] == '=' || body[0] == '>'))
    body = body.drop_front();
  if (body == "f2")
    return ElementType::F16;
  if (body == "f4")
    return ElementType::F32;
  if (body == "f8")
    return ElementType::F64;
  if (body == "i1")
    return ElementType::I8;
  if (body == "i4")
    return ElementType::I32;
  if (body == "i8")
    return ElementType::I64;
  if (body == "V2") {
    if (expectedType == ElementType::BF16)
      return ElementType::BF16;
    std::string expected =
        expectedType
            ? ("but " + stringifyElementType(*expectedType) + " is expected")
                  .str()
            : std::string("and no bf16 is expected here");
    return createStringError(
        "%s: dtype '%s' is raw 2-byte data (how ml_dtypes saves bfloat16); "
        "it is read only as bf16, %s",
        name.str().c_str(), descr.str().c_str(), expected.c_str());
  }
  return createStringError("%s: unsupported dtype '%s' (supported: <f2 <f4 "
                           "<f8 |i1 <i4 <i8, and <V2 for bfloat16)",
                           name.str().c_str(), descr.str().c_str());
}

} // namespace

StringRef kvmerge::runtime::getNpyDescr(ElementType type) {
  switch (type) {
  case ElementType::F16:
    return "<f2";
  case ElementType::BF16:
    return "<V2";
  case ElementType::F32:
    return "<f4";
  case ElementType::F64:
    return "<f8";
  case ElementType::I8:
    return "|i1";
  case ElementType::I32:
    return "<i4";
  case ElementType::I64:
    return "<i8";
  }
  llvm_unreachable("unknown element type");
}

namespace {
/// What a .npy preamble and header say.
struct NpyHeader {
  ElementType type;
  SmallVector<int64_t, 4> shape;
  uint64_t dataStart = 0;
  uint64_t dataBytes = 0;
};

/// The size of the preamble plus header that `buffer` (at least the first
/// 12 bytes, when the file has them) declares, or an error.
Expected<uint64_t> getNpyHeaderEnd(ArrayRef<uint8_t> buffer, StringRef name) {
  auto fail = [&](const Twine &message) -> Error {
    return createStringError(name + ": " + message);
  };
  if (buffer.size() < kMagicSize + 2 ||
      std::memcmp(buffer.data(), kMagic, kMagicSize) != 0)
    return fail("not a .npy file (bad magic; expected \\x93NUMPY)");
  uint8_t major = buffer[kMagicSize], minor = buffer[kMagicSize + 1];
  if (major < 1 || major > 3 || minor != 0)
    return fail("unsupported .npy format version " + Twine(unsigned(major)) +
                "." + Twine(unsigned(minor)) + " (supported: 1.0, 2.0, 3.0)");
  size_t lengthSize = major == 1 ? 2 : 4;
  size_t headerStart = kMagicSize + 2 + lengthSize;
  if (buffer.size() < headerStart)
    return fail("truncated header (file ends inside the header length)");
  uint64_t headerLength = major == 1
                              ? support::endian::read16le(buffer.data() + 8)
                              : support::endian::read32le(buffer.data() + 8);
  return headerStart + headerLength;
}

/// Parses the preamble and header dict of `buffer`, which holds at least
/// the header (the data need not follow).
Expected<NpyHeader> parseNpyHeader(ArrayRef<uint8_t> buffer, StringRef name,
                                   std::optional<ElementType> expectedType) {
  auto fail = [&](const Twine &message) -> Error {
    return createStringError(name + ": " + message);
  };
  Expected<uint64_t> headerEnd = getNpyHeaderEnd(buffer, name);
  if (!headerEnd)
    return headerEnd.takeError();
  size_t headerStart = buffer[kMagicSize] == 1 ? kMagicSize + 4 : kMagicSize + 6;
  uint64_t headerLength = *headerEnd - headerStart;
  if (headerLength > buffer.size() - headerStart)
    return fail("truncated header (header length " + Twine(headerLength) +
                " exceeds the " + Twine(buffer.size() - headerStart) +
                " bytes left in the file)");
  StringRef headerText(reinterpret_cast<const char *>(buffer.data()) +
                           headerStart,
                       headerLength);
  // Headers are printable ASCII; a NUL or other control byte would be
  // printed raw by the messages below: say where it is instead.
  for (auto [i, c] : llvm::enumerate(headerText)) {
    unsigned char byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 || byte >= 0x7f) && c != '\n' && c != '\t' && c != '\r')
      return fail("malformed header (byte 0x" + utohexstr(byte, false, 2) +
                  " at offset " + Twine(i) + " is not printable ASCII)");
  }
  Expected<std::map<std::string, PyValue>> dict =
      HeaderParser(headerText).parseDict();
  if (!dict)
    return fail(toString(dict.takeError()));

  auto get = [&](StringRef key,
                 PyValue::Kind kind) -> Expected<const PyValue *> {
    auto it = dict->find(key.str());
    if (it == dict->end())
      return fail("header has no '" + key + "' key");
    if (it->second.kind != kind)
      return fail("header key '" + key + "' has the wrong type");
    return &it->second;
  };
  Expected<const PyValue *> descr = get("descr", PyValue::Kind::String);
  if (!descr)
    return descr.takeError();
  Expected<const PyValue *> fortran = get("fortran_order", PyValue::Kind::Bool);
  if (!fortran)
    return fortran.takeError();
  Expected<const PyValue *> shapeValue = get("shape", PyValue::Kind::Tuple);
  if (!shapeValue)
    return shapeValue.takeError();

  if ((*fortran)->boolean)
    return fail("fortran_order=True arrays are not supported; save a C-order "
                "array (np.ascontiguousarray(arr))");
  Expected<ElementType> type = parseDescr((*descr)->string, name, expectedType);
  if (!type)
    return type.takeError();

  NpyHeader header;
  header.type = *type;
  header.shape.assign((*shapeValue)->tuple.begin(), (*shapeValue)->tuple.end());
  size_t width = getElementByteWidth(*type);
  Expected<int64_t> numElements = getNumElements(header.shape, width);
  if (!numElements)
    return fail(toString(numElements.takeError()) + " in shape " +
                formatShape(header.shape));
  header.dataBytes = static_cast<uint64_t>(*numElements) * width;
  header.dataStart = *headerEnd;
  return header;
}

std::string describeData(const NpyHeader &header) {
  return ("shape " + formatShape(header.shape) + " of " +
          stringifyElementType(header.type) + " needs " +
          Twine(header.dataBytes) + " bytes")
      .str();
}
} // namespace

Expected<HostTensor>
kvmerge::runtime::parseNpy(ArrayRef<uint8_t> buffer, StringRef name,
                           std::optional<ElementType> expectedType) {
  auto fail = [&](const Twine &message) -> Error {
    return createStringError(name + ": " + message);
  };
  Expected<NpyHeader> header = parseNpyHeader(buffer, name, expectedType);
  if (!header)
    return header.takeError();
  uint64_t expectedBytes = header->dataBytes;
  uint64_t available = buffer.size() - header->dataStart;
  if (available < expectedBytes)
    return fail("truncated data: " + describeData(*header) + " but only " +
                Twine(available) + " follow the header");
  if (available > expectedBytes)
    return fail("data size mismatch: " + describeData(*header) + " but " +
                Twine(available) + " follow the header");

  Expected<HostTensor> tensor =
      HostTensor::allocate(header->type, header->shape);
  if (!tensor)
    return fail(toString(tensor.takeError()));
  if (expectedBytes)
    std::memcpy(tensor->data(), buffer.data() + header->dataStart,
                expectedBytes);
  return tensor;
}

/// Reads a .npy file from a stream (stdin, a pipe, a device) without trusting
/// it to end: the header says how many bytes to read, and reading stops one
/// byte past them.
static Expected<HostTensor>
readNpyStream(sys::fs::file_t file, StringRef name,
              std::optional<ElementType> expectedType) {
  std::vector<uint8_t> buffer;
  // Appends up to `count` more bytes; returns false at the end of the stream.
  auto readMore = [&](uint64_t count) -> Expected<bool> {
    while (count) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(count, 1 << 20));
      size_t old = buffer.size();
      buffer.resize(old + chunk);
      Expected<size_t> got = sys::fs::readNativeFile(
          file, MutableArrayRef<char>(
                    reinterpret_cast<char *>(buffer.data()) + old, chunk));
      if (!got) {
        buffer.resize(old);
        return createStringError("cannot read '" + name +
                                 "': " + toString(got.takeError()));
      }
      buffer.resize(old + *got);
      if (*got == 0)
        return false;
      count -= *got;
    }
    return true;
  };
  // Preamble (12 bytes covers both header-length widths), then the header.
  Expected<bool> more = readMore(kMagicSize + 6);
  if (!more)
    return more.takeError();
  Expected<uint64_t> headerEnd = getNpyHeaderEnd(buffer, name);
  if (!headerEnd)
    return headerEnd.takeError();
  if (*headerEnd > buffer.size() && !(more = readMore(*headerEnd - buffer.size())))
    return more.takeError();
  Expected<NpyHeader> header = parseNpyHeader(buffer, name, expectedType);
  if (!header)
    return header.takeError();
  // The data, plus one byte to see whether more follows.
  uint64_t wanted = header->dataStart + header->dataBytes + 1;
  if (wanted > buffer.size() && !(more = readMore(wanted - buffer.size())))
    return more.takeError();
  if (buffer.size() == wanted)
    return createStringError(name + ": data size mismatch: " +
                             describeData(*header) +
                             " but more follow the header");
  return parseNpy(buffer, name, expectedType);
}

Expected<HostTensor>
kvmerge::runtime::readNpyFile(StringRef path,
                              std::optional<ElementType> expectedType) {
  auto cannotRead = [&](std::error_code ec) -> Error {
    return createStringError(ec, "cannot read '%s': %s", path.str().c_str(),
                             ec.message().c_str());
  };
  if (path == "-")
    return readNpyStream(sys::fs::getStdinHandle(), "<stdin>", expectedType);
  sys::fs::file_status status;
  if (std::error_code ec = sys::fs::status(path, status))
    return cannotRead(ec);
  if (sys::fs::is_directory(status))
    return cannotRead(std::make_error_code(std::errc::is_a_directory));
  if (!sys::fs::is_regular_file(status)) {
    // A pipe or a device (/dev/zero) has no size: read what the header asks.
    Expected<sys::fs::file_t> file = sys::fs::openNativeFileForRead(path);
    if (!file)
      return cannotRead(errorToErrorCode(file.takeError()));
    Expected<HostTensor> tensor = readNpyStream(*file, path, expectedType);
    sys::fs::closeFile(*file);
    return tensor;
  }
  ErrorOr<std::unique_ptr<MemoryBuffer>> file = MemoryBuffer::getFile(
      path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (std::error_code ec = file.getError())
    return cannotRead(ec);
  StringRef contents = (*file)->getBuffer();
  return parseNpy(
      ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(contents.data()),
                        contents.size()),
      path, expectedType);
}

void kvmerge::runtime::writeNpy(raw_ostream &os, ConstTensorView tensor) {
  std::string dict =
      "{'descr': '" + getNpyDescr(tensor.elementType).str() +
      "', 'fortran_order': False, 'shape': " + formatShape(tensor.shape) +
      ", }";
  // Pad with spaces so that preamble + header + '\n' is a multiple of 64.
  size_t preamble = kMagicSize + 2 + 2;
  uint8_t major = 1;
  if (alignTo(preamble + dict.size() + 1, 64) - preamble > 65535) {
    preamble = kMagicSize + 2 + 4; // version 2.0: 4-byte header length
    major = 2;
  }
  size_t total = alignTo(preamble + dict.size() + 1, 64);
  std::string header = dict;
  header.append(total - preamble - dict.size() - 1, ' ');
  header.push_back('\n');

  os.write(kMagic, kMagicSize);
  os << static_cast<char>(major) << static_cast<char>(0);
  char length[4];
  if (major == 1) {
    support::endian::write16le(length, static_cast<uint16_t>(header.size()));
    os.write(length, 2);
  } else {
    support::endian::write32le(length, static_cast<uint32_t>(header.size()));
    os.write(length, 4);
  }
  os << header;
  os.write(static_cast<const char *>(tensor.data), tensor.getByteSize());
}

Expected<sys::fs::TempFile>
kvmerge::runtime::writeNpyTemporary(StringRef path, ConstTensorView tensor) {
  Expected<sys::fs::TempFile> temp =
      sys::fs::TempFile::create(path + ".tmp-%%%%%%");
  if (!temp)
    return createStringError("cannot write '" + path +
                             "': " + toString(temp.takeError()));
  raw_fd_ostream os(temp->FD, /*shouldClose=*/false);
  writeNpy(os, tensor);
  os.flush();
  if (std::error_code ec = os.error()) {
    os.clear_error();
    consumeError(temp->discard());
    return createStringError(ec, "cannot write '%s': %s", path.str().c_str(),
                             ec.message().c_str());
  }
  return temp;
}

Error kvmerge::runtime::writeNpyFile(StringRef path, ConstTensorView tensor) {
  Expected<sys::fs::TempFile> temp = writeNpyTemporary(path, tensor);
  if (!temp)
    return temp.takeError();
  if (Error err = temp->keep(path)) {
    consumeError(temp->discard());
    return createStringError("cannot write '" + path +
                             "': " + toString(std::move(err)));
  }
  return Error::success();
}
