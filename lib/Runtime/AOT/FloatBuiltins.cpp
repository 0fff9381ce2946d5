//===- FloatBuiltins.cpp - compiler builtins that artifacts may call ------===//
//
// LLVM lowers `fptrunc float to bfloat` to a call of `__truncsfbf2` on hosts
// without a native instruction (x86-64-v3, the default --mcpu of kvmerge-aot).
// It lives in compiler-rt and in libgcc >= 13, neither of which a deployment
// machine (or Debian 12's libgcc) is guaranteed to have, so every artifact
// carries its own, hidden, copy: it depends only on libc, libm, libdl,
// libpthread and the C++ runtime. Same semantics as compiler-rt: round to
// nearest even, overflow to infinity, NaN stays a (quiet) NaN.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstring>

namespace {

__bf16 fromBits(uint16_t bits) {
  __bf16 result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

} // namespace

extern "C" __bf16 __truncsfbf2(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) // NaN: keep sign and payload, quiet
    return fromBits(static_cast<uint16_t>((bits >> 16) | 0x0040u));
  bits += 0x7fffu + ((bits >> 16) & 1u); // round to nearest, ties to even
  return fromBits(static_cast<uint16_t>(bits >> 16));
}
