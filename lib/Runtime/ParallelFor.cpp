//===- ParallelFor.cpp - the thread pool compiled CPU code calls ----------===//
//
// See include/kvmerge/Runtime/ParallelFor.h (plain C++17, no LLVM).
//
// One process-wide pool (created on first use, grown on demand, never
// destroyed: workers sleep on a condition variable and die with the process).
// A job hands out chunks of [0, n) through an atomic counter; the caller takes
// chunks too and returns when every participating worker is done.
//
//===----------------------------------------------------------------------===//

#include "kvmerge/Runtime/ParallelFor.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sched.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace kvmerge::runtime;

namespace {

using Task = void (*)(int64_t, int64_t, void *);

/// The thread count of kernels called from this thread (0 = default).
thread_local int threadCount = 0;
/// Set while this thread runs iterations of a job (nested calls run inline).
thread_local bool insideTask = false;

struct Job {
  int64_t n = 0, chunk = 1;
  Task task = nullptr;
  void *context = nullptr;
  std::atomic<int64_t> next{0};
  /// Pool workers that take part (the caller is one more).
  int workers = 0;
};

void work(Job &job) {
  for (;;) {
    int64_t begin = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
    if (begin >= job.n)
      return;
    job.task(begin, std::min(begin + job.chunk, job.n), job.context);
  }
}

class Pool {
public:
  void run(int64_t n, Task task, void *context, int threads) {
    std::unique_lock<std::mutex> caller(callerMutex, std::try_to_lock);
    if (!caller) { // another thread's job is running: do this one here
      task(0, n, context);
      return;
    }
    int64_t parts = std::min<int64_t>(threads, n);
    // About four chunks per thread: balance without much counter traffic.
    int64_t chunks = std::min<int64_t>(n, parts * 4);
    Job job;
    job.n = n;
    job.chunk = (n + chunks - 1) / chunks;
    job.task = task;
    job.context = context;
    job.workers = static_cast<int>(parts - 1);
    {
      std::unique_lock<std::mutex> lock(mutex);
      while (static_cast<int>(workers.size()) < job.workers) {
        int index = static_cast<int>(workers.size());
        workers.emplace_back([this, index] { workerLoop(index); });
        workers.back().detach();
      }
      current = &job;
      pending = job.workers;
      ++generation;
    }
    wake.notify_all();
    insideTask = true;
    work(job);
    insideTask = false;
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return pending == 0; });
    current = nullptr;
  }

private:
  void workerLoop(int index) {
    insideTask = true;
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return generation != seen; });
      seen = generation;
      Job *job = current;
      if (!job || index >= job->workers)
        continue;
      lock.unlock();
      work(*job);
      lock.lock();
      if (--pending == 0)
        done.notify_one();
    }
  }

  std::mutex callerMutex; // one job at a time
  std::mutex mutex;       // guards everything below
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  Job *current = nullptr;
  int pending = 0;
  uint64_t generation = 0;
};

Pool &pool() {
  // Never destroyed (detached workers may still wait on it at exit). A
  // forked child has none of the parent's workers: it makes its own pool.
  static std::mutex creation;
  static Pool *instance = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(creation);
  if (!instance || owner != getpid()) {
    instance = new Pool();
    owner = getpid();
  }
  return *instance;
}

} // namespace

int kvmerge::runtime::availableCPUs() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0)
      return std::min(n, kMaxThreads);
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(std::min<unsigned>(n, kMaxThreads)) : 1;
}

std::optional<int> kvmerge::runtime::parseThreads(const std::string &text) {
  if (text.empty() || text.size() > 6 ||
      !std::all_of(text.begin(), text.end(),
                   [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int n = std::atoi(text.c_str());
  if (n < 1 || n > kMaxThreads)
    return std::nullopt;
  return n;
}

int kvmerge::runtime::defaultThreads(std::string *error) {
  const char *env = std::getenv("KVMERGE_THREADS");
  if (env && *env) {
    if (std::optional<int> n = parseThreads(env))
      return *n;
    if (error)
      *error = "KVMERGE_THREADS='" + std::string(env) +
               "' is not a thread count (expected an integer in 1.." +
               std::to_string(kMaxThreads) + ")";
  }
  return availableCPUs();
}

void kvmerge::runtime::setThreads(int threads) {
  threadCount = std::clamp(threads, 0, kMaxThreads);
}

int kvmerge::runtime::getThreads() {
  if (threadCount > 0)
    return threadCount;
  static const int fallback = defaultThreads();
  return fallback;
}

kvmerge::runtime::ScopedThreads::ScopedThreads(int threads)
    : previous(threadCount) {
  setThreads(threads);
}

kvmerge::runtime::ScopedThreads::~ScopedThreads() { threadCount = previous; }

extern "C" void kvmerge_parallel_for(int64_t n, Task task, void *context) {
  if (n <= 0)
    return;
  int threads = getThreads();
  if (insideTask || threads <= 1 || n == 1) {
    task(0, n, context);
    return;
  }
  pool().run(n, task, context, threads);
}
