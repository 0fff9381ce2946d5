//===- ParallelFor.h - the thread pool compiled CPU code calls --*- C++ -*-===//
//
// The CPU pipeline with `parallel-runtime=true` (what kvmerge-run and the
// Python package use) outlines every outermost `scf.parallel` into a task
// `void task(int64_t begin, int64_t end, void *context)` and calls
//
//   kvmerge_parallel_for(n, task, context);
//
// which runs task over chunks of [0, n) on a process-wide pool of worker
// threads plus the calling thread and returns when all of [0, n) is done.
// Iterations of an scf.parallel are independent, so results do not depend on
// the number of threads or the chunking (bitwise).
//
// The number of threads is a property of the calling thread (setThreads),
// so two threads of one process can run kernels with different counts. Its
// default comes from $KVMERGE_THREADS, else every CPU this process may run
// on. A call from inside a task, or while the pool serves another caller,
// runs its iterations on the calling thread (never a deadlock).
//
// Plain C++17, no LLVM: it is also part of the AOT runtime.
//
//===----------------------------------------------------------------------===//

#ifndef KVMERGE_RUNTIME_PARALLELFOR_H
#define KVMERGE_RUNTIME_PARALLELFOR_H

#include <cstdint>
#include <optional>
#include <string>

extern "C" {
/// What outlined parallel loops call (symbol `kvmerge_parallel_for`).
void kvmerge_parallel_for(int64_t n, void (*task)(int64_t, int64_t, void *),
                          void *context);
}

namespace kvmerge::runtime {

/// Largest accepted thread count.
inline constexpr int kMaxThreads = 1024;

/// CPUs this process may run on (sched_getaffinity; at least 1).
int availableCPUs();
/// Parses a thread count (a decimal in [1, kMaxThreads]); nullopt otherwise.
std::optional<int> parseThreads(const std::string &text);
/// $KVMERGE_THREADS when set to a valid count, else availableCPUs().
/// `error` (if given) receives a message when the variable is set but
/// invalid (the default is used then).
int defaultThreads(std::string *error = nullptr);

/// Threads kernels called from this thread use (0 = defaultThreads()).
void setThreads(int threads);
/// The effective count for this thread (>= 1).
int getThreads();

/// Sets this thread's count for a scope and restores it afterwards.
class ScopedThreads {
public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads &) = delete;
  ScopedThreads &operator=(const ScopedThreads &) = delete;

private:
  int previous;
};

} // namespace kvmerge::runtime

#endif // KVMERGE_RUNTIME_PARALLELFOR_H
