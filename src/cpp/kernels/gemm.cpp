#include "kernels/gemm.h"

#include <algorithm>

namespace rnnfast::kernels {
namespace {

// Packs rows [i0, i0+mlen) and depth [p0, p0+kc) of op(A) into panels of mr rows:
// out[(panel*kc + k)*mr + r], zero padded past mlen.
template <typename T>
void pack_a_block(Trans trans, const T* a, index_t lda, index_t i0, index_t mlen, index_t p0,
                  index_t kc, index_t mr, T* out) {
  for (index_t ip = 0; ip < mlen; ip += mr) {
    T* dst = out + ip * kc;
    const index_t rows = std::min(mr, mlen - ip);
    for (index_t k = 0; k < kc; ++k) {
      for (index_t r = 0; r < mr; ++r) {
        const index_t i = i0 + ip + r, kk = p0 + k;
        dst[k * mr + r] =
            r < rows ? (trans == Trans::No ? a[i * lda + kk] : a[kk * lda + i]) : T(0);
      }
    }
  }
}

}  // namespace

template <typename T>
PackedB<T>::PackedB(Trans trans, index_t k, index_t n, const T* b, index_t ldb)
    : kernels_(&active_kernels<T>()), k_(k), n_(n) {
  const index_t nr = kernels_->nr;
  const index_t panels = (n + nr - 1) / nr;
  data_.resize(static_cast<size_t>(panels * k * nr));
  T* data = data_.data();
  parallel_for(
      panels, std::max<index_t>(1, 4096 / std::max<index_t>(k, 1)), [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          T* dst = data + p * k * nr;
          const index_t cols = std::min(nr, n - p * nr);
          for (index_t kk = 0; kk < k; ++kk) {
            for (index_t j = 0; j < nr; ++j) {
              const index_t jj = p * nr + j;
              dst[kk * nr + j] =
                  j < cols ? (trans == Trans::No ? b[kk * ldb + jj] : b[jj * ldb + kk]) : T(0);
            }
          }
        }
      });
}

template <typename T>
void gemm(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const PackedB<T>& b, bool accumulate, T* c, index_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  const KernelTable<T>& kt = b.kernels();
  const index_t mc = kt.mr * 12, nc = kt.nr * 16;  // a thread's block of C
  const index_t m_blocks = (m + mc - 1) / mc, n_blocks = (n + nc - 1) / nc;
  // About 256k multiply-adds a chunk keeps the fork cost small next to the work.
  const index_t block_work = std::min(m, mc) * std::min(n, nc) * k;
  const index_t grain = std::max<index_t>(1, (index_t{1} << 18) / std::max<index_t>(block_work, 1));
  parallel_for(m_blocks * n_blocks, grain, [&](index_t t0, index_t t1) {
    std::vector<T> a_pack(static_cast<size_t>(mc * kKc));
    for (index_t t = t0; t < t1; ++t) {
      const index_t i0 = (t / n_blocks) * mc, j0 = (t % n_blocks) * nc;
      const index_t mlen = std::min(mc, m - i0), nlen = std::min(nc, n - j0);
      for (index_t p0 = 0; p0 < k; p0 += kKc) {
        const index_t kc = std::min(kKc, k - p0);
        pack_a_block(trans_a, a, lda, i0, mlen, p0, kc, kt.mr, a_pack.data());
        kt.gemm_block(kc, mlen, nlen, a_pack.data(), b.panel(j0 / kt.nr) + p0 * kt.nr, k * kt.nr,
                      c + i0 * ldc + j0, ldc, accumulate || p0 > 0);
      }
    }
  });
}

template <typename T>
void add_column_sums(index_t m, index_t n, const T* a, index_t lda, T* out) {
  // Row by row (cache friendly); each column is still summed in ascending row order.
  parallel_for(n, std::max<index_t>(16, 65536 / std::max<index_t>(m, 1)),
               [&](index_t j0, index_t j1) {
                 std::vector<T> sums(static_cast<size_t>(j1 - j0), T(0));
                 for (index_t i = 0; i < m; ++i)
                   for (index_t j = j0; j < j1; ++j) sums[j - j0] += a[i * lda + j];
                 for (index_t j = j0; j < j1; ++j) out[j] += sums[j - j0];
               });
}

#define RNNFAST_INSTANTIATE(T)                                                                  \
  template class PackedB<T>;                                                                    \
  template void gemm<T>(Trans, index_t, index_t, index_t, const T*, index_t, const PackedB<T>&, \
                        bool, T*, index_t);                                                     \
  template void add_column_sums<T>(index_t, index_t, const T*, index_t, T*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast::kernels
