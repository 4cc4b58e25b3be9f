#include "kernels/peak.h"

#include <algorithm>
#include <chrono>

#include "kernels/table.h"

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

}  // namespace rnnfast::kernels
