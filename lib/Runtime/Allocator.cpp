//===- Allocator.cpp - the allocator compiled CPU code calls --------------===//
//
// See include/kvmerge/Runtime/Allocator.h (plain C++17, no LLVM).
//
// One process-wide cache under a mutex: the live large blocks by address
// (for their sizes), and the freed ones in the order they were freed. An
// allocation takes the smallest cached block that holds it and wastes at most
// half of it; a free that brings the cache over its budget releases the
// oldest blocks.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/Allocator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

using namespace kvmerge::runtime;

namespace {

/// Alignment of cached blocks (any request up to it may reuse any block).
constexpr size_t kBlockAlignment = 64;
/// Sizes of cached blocks are rounded up to this granularity.
constexpr size_t kGranularity = size_t(64) << 10;

[[noreturn]] void allocationFailed(size_t bytes) {
  std::fprintf(stderr,
               "kvmerge: a compiled function could not allocate %zu bytes "
               "(out of memory)\n",
               bytes);
  std::fflush(stderr);
  std::_Exit(1);
}

struct Block {
  void *ptr;
  size_t size;
};

class Cache {
public:
  void *allocate(size_t bytes, size_t alignment) {
    if (bytes < kCachedBlockMin || alignment > kBlockAlignment)
      return plain(bytes, alignment);
    size_t size = (bytes + kGranularity - 1) / kGranularity * kGranularity;
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++stats.largeAllocations;
      size_t best = freed.size();
      for (size_t i = 0; i < freed.size(); ++i)
        if (freed[i].size >= size && freed[i].size / 2 <= size &&
            (best == freed.size() || freed[i].size < freed[best].size))
          best = i;
      if (best != freed.size()) {
        Block block = freed[best];
        freed.erase(freed.begin() + static_cast<std::ptrdiff_t>(best));
        cached -= block.size;
        ++stats.reused;
        live[block.ptr] = block.size;
        return block.ptr;
      }
    }
    void *p = std::aligned_alloc(kBlockAlignment, size);
    if (!p)
      allocationFailed(bytes);
    std::lock_guard<std::mutex> lock(mutex);
    live[p] = size;
    return p;
  }

  void release(void *p) {
    if (!p)
      return;
    std::vector<void *> drop;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = live.find(p);
      if (it == live.end()) {
        drop.push_back(p); // a small block
      } else {
        size_t size = it->second;
        live.erase(it);
        size_t budget = allocatorCacheBudget();
        if (size > budget) {
          drop.push_back(p);
        } else {
          freed.push_back({p, size});
          cached += size;
          size_t n = 0;
          while (cached > budget) {
            cached -= freed[n].size;
            drop.push_back(freed[n].ptr);
            ++n;
          }
          freed.erase(freed.begin(),
                      freed.begin() + static_cast<std::ptrdiff_t>(n));
        }
      }
    }
    for (void *q : drop)
      std::free(q);
  }

  AllocatorStats snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    AllocatorStats s = stats;
    s.cachedBytes = cached;
    s.cachedBlocks = freed.size();
    return s;
  }

  void clear() {
    std::vector<Block> drop;
    {
      std::lock_guard<std::mutex> lock(mutex);
      drop.swap(freed);
      cached = 0;
    }
    for (Block &b : drop)
      std::free(b.ptr);
  }

private:
  static void *plain(size_t bytes, size_t alignment) {
    void *p = alignment > alignof(std::max_align_t)
                  ? std::aligned_alloc(alignment,
                                       (bytes + alignment - 1) / alignment *
                                           alignment)
                  : std::malloc(bytes);
    if (!p && bytes)
      allocationFailed(bytes);
    return p;
  }

  std::mutex mutex;
  std::unordered_map<void *, size_t> live;
  std::vector<Block> freed; // oldest first
  size_t cached = 0;
  AllocatorStats stats;
};

Cache &cache() {
  // Never destroyed: compiled code may free blocks during exit.
  static Cache *instance = new Cache();
  return *instance;
}

} // namespace

size_t kvmerge::runtime::allocatorCacheBudget() {
  static const size_t budget = [] {
    const char *env = std::getenv("KVMERGE_ALLOC_CACHE_MB");
    size_t mb = 1024;
    if (env && *env) {
      char *end = nullptr;
      unsigned long long v = std::strtoull(env, &end, 10);
      if (end && *end == '\0' && v <= (1ull << 30))
        mb = static_cast<size_t>(v);
    }
    return mb << 20;
  }();
  return budget;
}

AllocatorStats kvmerge::runtime::allocatorStats() {
  return cache().snapshot();
}

void kvmerge::runtime::releaseCachedBlocks() { cache().clear(); }

extern "C" void *kvmerge_runtime_alloc(size_t bytes) {
  return cache().allocate(bytes, alignof(std::max_align_t));
}

extern "C" void *kvmerge_runtime_aligned_alloc(size_t alignment,
                                               size_t bytes) {
  return cache().allocate(bytes, alignment);
}

extern "C" void kvmerge_runtime_free(void *ptr) { cache().release(ptr); }
