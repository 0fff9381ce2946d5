//===- Allocator.h - the allocator compiled CPU code calls ------*- C++ -*-===//
//
// The CPU pipeline with `runtime-allocator=true` (what kvmerge-run and the
// Python package use) lowers memref.alloc / memref.dealloc to MLIR's generic
// allocation functions (`_mlir_memref_to_llvm_alloc`, `..._aligned_alloc`,
// `..._free`), which the JIT binds to the functions below.
//
// Why: a kernel's temporaries (the similarities, slot maps, selection keys
// of a compression; the accumulators of an attention) are large, freed at
// the end of every call and allocated again by the next one. glibc returns
// such blocks to the kernel (munmap, or a heap trim), so every call
// page-faults all of them in again: measured on the 2-core CI machine, a
// third of the time of a 16K-token f16 compress. Here blocks of at least
// kCachedBlockMin bytes are kept after they are freed (up to a byte budget)
// and handed to the next allocation that fits, so repeated calls touch
// memory that is already mapped.
//
// Blocks are plain malloc/aligned_alloc blocks (no header): a block is found
// again by its address. Smaller blocks go straight to malloc/free. Every
// failure to allocate ends the process with a message (compiled code does
// not check its allocations).
//
// Plain C++17, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_ALLOCATOR_H
#define KVMERGE_RUNTIME_ALLOCATOR_H

#include <cstddef>
#include <cstdint>

extern "C" {
/// What `_mlir_memref_to_llvm_alloc` / `_aligned_alloc` / `_free` resolve to.
void *kvmerge_runtime_alloc(size_t bytes);
void *kvmerge_runtime_aligned_alloc(size_t alignment, size_t bytes);
void kvmerge_runtime_free(void *ptr);
}

namespace kvmerge::runtime {

/// Blocks from this size on are cached when freed.
inline constexpr size_t kCachedBlockMin = size_t(64) << 10;

/// Bytes of freed blocks kept for reuse: $KVMERGE_ALLOC_CACHE_MB (0 turns
/// caching off), default 1024 MiB.
size_t allocatorCacheBudget();

struct AllocatorStats {
  uint64_t largeAllocations = 0; ///< allocations of >= kCachedBlockMin bytes
  uint64_t reused = 0;           ///< ... served from the cache
  uint64_t cachedBytes = 0;      ///< bytes in freed blocks kept now
  uint64_t cachedBlocks = 0;
};
AllocatorStats allocatorStats();

/// Frees every cached block (live blocks are not affected).
void releaseCachedBlocks();

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_ALLOCATOR_H
