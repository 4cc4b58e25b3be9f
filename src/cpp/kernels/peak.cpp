#include "kernels/peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <vector>

#include "kernels/table.h"
#include "runtime/aligned.h"

#ifdef RNNFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace rnnfast::kernels {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs `rounds` of the chains on each of `threads` threads at once; the wall time.
double run_chains(const KernelTable<float>& kt, int threads, index_t rounds) {
  volatile float sink = 0.0f;  // the chains' results go somewhere
  const Clock::time_point start = Clock::now();
#ifdef RNNFAST_HAVE_OPENMP
#pragma omp parallel num_threads(threads)
  {
    const float r = kt.fma_chains(rounds, 1.0f + static_cast<float>(omp_get_thread_num()));
#pragma omp critical
    sink = sink + r;
  }
#else
  (void)threads;
  sink = sink + kt.fma_chains(rounds, 1.0f);
#endif
  return seconds_since(start);
}

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  const KernelTable<float>& kt = active_kernels<float>();
  threads = std::max(threads, 1);
  const double flop_per_round = 2.0 * static_cast<double>(kt.fma_chain_count * kt.width);
  // Rounds for one run of about seconds / 5, from a short trial on one thread.
  index_t rounds = 1 << 14;
  double trial = run_chains(kt, 1, rounds);
  while (trial < 1e-3 && rounds < (index_t{1} << 40)) {
    rounds *= 4;
    trial = run_chains(kt, 1, rounds);
  }
  const double want = std::max(seconds, 0.01) / 5;
  rounds = std::max<index_t>(1, static_cast<index_t>(static_cast<double>(rounds) * want / trial));
  double best = 0.0;
  for (int i = 0; i < 5; ++i) {
    const double t = run_chains(kt, threads, rounds);
    best = std::max(best, threads * static_cast<double>(rounds) * flop_per_round / t);
  }
  return best / 1e9;
}

double l2_matvec_gbps(index_t bytes, double seconds) {
  const KernelTable<float>& kt = active_kernels<float>();
  constexpr index_t kDepth = 256;  // 1 KiB rows
  const index_t rows = std::max<index_t>(1, bytes / (kDepth * index_t{sizeof(float)}));
  const auto w = aligned_array<float>(static_cast<size_t>(rows * kDepth));
  const auto x = aligned_array<float>(kDepth), y = aligned_array<float>(static_cast<size_t>(rows));
  for (index_t i = 0; i < rows * kDepth; ++i) w[i] = 1e-3f * static_cast<float>(i % 7);
  for (index_t k = 0; k < kDepth; ++k) x[k] = 1.0f;
  const auto run = [&](index_t reps) {
    const Clock::time_point start = Clock::now();
    for (index_t r = 0; r < reps; ++r)
      kt.rows_dot(rows, kDepth, w.get(), kDepth, x.get(), kDepth, 1, y.get(), rows);
    return seconds_since(start);
  };
  index_t reps = 16;
  double trial = run(reps);  // also brings the matrix into the caches
  while (trial < 1e-3 && reps < (index_t{1} << 30)) {
    reps *= 4;
    trial = run(reps);
  }
  const double want = std::max(seconds, 0.01) / 5;
  reps = std::max<index_t>(1, static_cast<index_t>(static_cast<double>(reps) * want / trial));
  double best = 0.0;
  for (int i = 0; i < 5; ++i) {
    const double read = static_cast<double>(reps * rows * kDepth) * sizeof(float);
    best = std::max(best, read / run(reps));
  }
  return best / 1e9;
}

double round_trip_ns(double seconds) {
#ifdef RNNFAST_HAVE_OPENMP
  // Each counter on its own cache line, so that a line crosses once each way a round trip.
  struct alignas(64) Counter {
    std::atomic<int64_t> value{0};
  };
  Counter ping, pong;
  std::atomic<bool> stop{false};
  constexpr int64_t kBurst = 100;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(std::max(seconds, 0.01)));
  // Waits until `c` holds `want`; false when the other thread gave up or time ran out (a thread
  // descheduled for long, or never started), so that neither ever waits forever.
  const auto wait_for = [&](const Counter& c, int64_t want) {
    for (unsigned spins = 1;; ++spins) {
      if (c.value.load(std::memory_order_acquire) == want) return true;
      if (spins % 4096 == 0 && (stop.load(std::memory_order_relaxed) || Clock::now() > deadline)) {
        stop.store(true, std::memory_order_relaxed);
        return false;
      }
    }
  };
  // Room for every burst taken before the region: nothing inside it allocates (an exception
  // cannot leave a parallel region).
  std::vector<double> bursts;
  bursts.reserve(1 << 16);
  bool paired = false;
#pragma omp parallel num_threads(2)
  {
    const bool first = omp_get_thread_num() == 0;
#pragma omp single
    paired = omp_get_num_threads() == 2;
    if (paired) {
      for (int64_t n = 1; !stop.load(std::memory_order_relaxed); n += kBurst) {
        const Clock::time_point start = Clock::now();
        int64_t i = n;
        for (; i < n + kBurst; ++i) {
          if (first) {
            ping.value.store(i, std::memory_order_release);
            if (!wait_for(pong, i)) break;
          } else {
            if (!wait_for(ping, i)) break;
            pong.value.store(i, std::memory_order_release);
          }
        }
        if (i < n + kBurst) break;
        if (first) {
          bursts.push_back(seconds_since(start) * 1e9 / kBurst);
          if (bursts.size() == bursts.capacity() ||
              Clock::now() > deadline - std::chrono::milliseconds(1)) {
            stop.store(true, std::memory_order_relaxed);
          }
        }
      }
    }
  }
  if (!paired || bursts.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::nth_element(bursts.begin(), bursts.begin() + bursts.size() / 2, bursts.end());
  return bursts[bursts.size() / 2];
#else
  (void)seconds;
  return std::numeric_limits<double>::quiet_NaN();
#endif
}

}  // namespace rnnfast::kernels
