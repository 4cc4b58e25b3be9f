// Thread-count setting and the one parallel_for every kernel uses.
#pragma once
#include <algorithm>
#include <cstddef>

#ifdef RNNFAST_HAVE_OPENMP
#include <omp.h>
#endif
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define RNNFAST_HAVE_MXCSR 1
#elif defined(__aarch64__)
#include <cstdint>
#define RNNFAST_HAVE_FPCR 1
#endif

namespace rnnfast {

using index_t = std::ptrdiff_t;

// The only mutable global of the library: how many threads kernels may use (>= 1).
void set_num_threads(int n);
int get_num_threads();
bool have_openmp();

// While alive, the calling thread flushes denormal results to zero and reads denormal inputs as
// zero (FTZ/DAZ): denormals are a known cause of erratic RNN slowdowns on CPUs (a saturating
// gate's derivative decays into them). The caller's mode is restored on exit. Every thread that
// runs kernel code holds one, so results do not depend on which thread computed them.
class FlushDenormals {
 public:
  FlushDenormals() {
#if defined(RNNFAST_HAVE_MXCSR)
    saved_ = _mm_getcsr();
    _mm_setcsr(static_cast<unsigned>(saved_) | 0x8040u);  // FTZ | DAZ
#elif defined(RNNFAST_HAVE_FPCR)
    __asm__ volatile("mrs %0, fpcr" : "=r"(saved_));
    const uint64_t flushing = saved_ | (uint64_t{1} << 24);  // FZ: inputs and results
    __asm__ volatile("msr fpcr, %0" : : "r"(flushing));
#endif
  }
  ~FlushDenormals() {
#if defined(RNNFAST_HAVE_MXCSR)
    _mm_setcsr(static_cast<unsigned>(saved_));
#elif defined(RNNFAST_HAVE_FPCR)
    __asm__ volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned long long saved_ = 0;  // MXCSR (32 bits) or FPCR (64 bits)
};

inline int thread_index() {
#ifdef RNNFAST_HAVE_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Calls body(begin, end) on contiguous chunks of [0, n), each at least `grain` long, one chunk a
// thread. Serial when the range is small, when one thread is allowed, or when already inside a
// parallel region. The split only decides who computes an element, never how: every result is
// reduced in the same order whatever the thread count, so outputs are bitwise reproducible.
template <typename Body>
void parallel_for(index_t n, index_t grain, const Body& body) {
  if (n <= 0) return;
  const index_t max_chunks = (n + std::max<index_t>(grain, 1) - 1) / std::max<index_t>(grain, 1);
  const index_t chunks = std::min<index_t>(get_num_threads(), max_chunks);
#ifdef RNNFAST_HAVE_OPENMP
  if (chunks > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(static_cast<int>(chunks))
    {
      const FlushDenormals flush;
      const index_t id = omp_get_thread_num();
      const index_t count = omp_get_num_threads();
      body(n * id / count, n * (id + 1) / count);
    }
    return;
  }
#endif
  body(0, n);
}

}  // namespace rnnfast
