//===- MemrefCopy.cpp - what memref.copy calls for strided copies ---------===//
//
// See include/kvmerge/Runtime/MemrefCopy.h (plain C++17, no LLVM).
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/MemrefCopy.h"

#include <cstring>
#include <vector>

void kvmerge::runtime::memrefCopy(int64_t elementSize, UnrankedMemref *src,
                                  UnrankedMemref *dst) {
  int64_t rank = src->rank;
  auto *srcWords = static_cast<int64_t *>(src->descriptor);
  auto *dstWords = static_cast<int64_t *>(dst->descriptor);
  char *srcBase =
      reinterpret_cast<char *>(srcWords[1]) + srcWords[2] * elementSize;
  char *dstBase =
      reinterpret_cast<char *>(dstWords[1]) + dstWords[2] * elementSize;
  if (rank == 0) {
    std::memcpy(dstBase, srcBase, elementSize);
    return;
  }
  const int64_t *sizes = srcWords + 3;
  const int64_t *srcStrides = srcWords + 3 + rank;
  const int64_t *dstStrides = dstWords + 3 + rank;
  for (int64_t d = 0; d < rank; ++d)
    if (sizes[d] == 0)
      return;
  std::vector<int64_t> index(rank, 0);
  int64_t srcOffset = 0, dstOffset = 0;
  while (true) {
    std::memcpy(dstBase + dstOffset * elementSize,
                srcBase + srcOffset * elementSize, elementSize);
    int64_t axis = rank - 1;
    for (; axis >= 0; --axis) {
      srcOffset += srcStrides[axis];
      dstOffset += dstStrides[axis];
      if (++index[axis] < sizes[axis])
        break;
      srcOffset -= sizes[axis] * srcStrides[axis];
      dstOffset -= sizes[axis] * dstStrides[axis];
      index[axis] = 0;
    }
    if (axis < 0)
      return;
  }
}
