// Thread-count setting and the one parallel_for every kernel uses.
#pragma once
#include <algorithm>
#include <cstddef>

#ifdef RNNFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace rnnfast {

using index_t = std::ptrdiff_t;

// The only mutable global of the library: how many threads kernels may use (>= 1).
void set_num_threads(int n);
int get_num_threads();
bool have_openmp();

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
