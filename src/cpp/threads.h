// The thread-count setting, and the one way kernels run on several threads: run_team.
//
// A parallel region may get fewer threads than it asks for (OMP_THREAD_LIMIT, OMP_DYNAMIC, a call
// from inside another parallel region, a thread that cannot be created), so every region plans
// its work from the team it actually got: body(thread, team) for thread in [0, team). Work is
// split so that who computes an element never changes how, so results are bitwise the same for
// any team. A process forked after rnnfast started a team runs single-threaded: libgomp's pool
// does not survive fork() and the child would hang in its first region.
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

// The most threads set_num_threads accepts: far beyond any useful team, small enough that a
// typo (99999999999) is refused rather than tried.
inline constexpr int kMaxThreads = 1024;

// The only mutable global of the library: how many threads kernels may use.
// Throws std::invalid_argument for n outside [1, kMaxThreads], std::runtime_error when n threads
// cannot be started here (the setting is then left as it was).
void set_num_threads(int n);
int get_num_threads();
// The team a region may ask for now: the setting, capped by what could be started, 1 in a child
// forked after rnnfast ran a team.
int usable_threads();
bool have_openmp();
bool in_forked_child();

namespace detail {
int team_for(int wanted);  // usable_threads() capped by `wanted`; records that a team ran
}

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

// Runs body(thread, team) on a team of at most `wanted` threads, each thread with denormals
// flushed. `team` is the size OpenMP granted, which may be anything from 1 to `wanted`.
template <typename Body>
void run_team(int wanted, const Body& body) {
  const int n = detail::team_for(wanted);
#ifdef RNNFAST_HAVE_OPENMP
  if (n > 1) {
#pragma omp parallel num_threads(n)
    {
      const FlushDenormals flush;
      body(omp_get_thread_num(), omp_get_num_threads());
    }
    return;
  }
#endif
  const FlushDenormals flush;
  body(0, 1);
}

// Calls body(begin, end) on contiguous chunks of [0, n), each at least `grain` long, one chunk a
// thread. Serial when the range is small or one thread is allowed. The split only decides who
// computes an element, never how: every result is reduced in the same order whatever the team.
template <typename Body>
void parallel_for(index_t n, index_t grain, const Body& body) {
  if (n <= 0) return;
  const index_t g = std::max<index_t>(grain, 1);
  const index_t chunks = std::min<index_t>(get_num_threads(), (n + g - 1) / g);
  run_team(static_cast<int>(chunks),
           [&](int id, int count) { body(n * id / count, n * (id + 1) / count); });
}

}  // namespace rnnfast
