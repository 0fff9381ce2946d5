//===- MemrefCopy.h - what memref.copy calls for strided copies -*- C++ -*-===//
//
// `memref.copy` between memrefs that are not both contiguous lowers to a call
// of `memrefCopy(elementSize, src, dst)` (upstream's from
// libmlir_c_runner_utils). kvmerge implements it itself, in plain C++17, so
// that neither the JIT (registered under that name by the Runner) nor an
// ahead-of-time artifact (which links it statically) needs an extra shared
// library.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_MEMREFCOPY_H
#define KVMERGE_RUNTIME_MEMREFCOPY_H

#include <cstdint>

namespace kvmerge::runtime {

/// An unranked memref descriptor as the lowered code passes it: {rank,
/// pointer to the ranked descriptor {allocated, aligned, offset,
/// sizes[rank], strides[rank]}}.
struct UnrankedMemref {
  int64_t rank;
  void *descriptor;
};

/// Copies every element of `src` into `dst` (same rank and sizes, any
/// strides), `elementSize` bytes each.
void memrefCopy(int64_t elementSize, UnrankedMemref *src, UnrankedMemref *dst);

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_MEMREFCOPY_H
