// Flush-to-zero / denormals-are-zero while kernels run, the caller's mode restored after.
#pragma once
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define RNNFAST_HAVE_MXCSR 1
#elif defined(__aarch64__)
#include <cstdint>
#define RNNFAST_HAVE_FPCR 1
#endif

namespace rnnfast {

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

}  // namespace rnnfast
