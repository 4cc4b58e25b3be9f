#include "kernels/gemm.h"

#include <algorithm>

namespace rnnfast::kernels {
namespace {

// Packs rows [i0, i0+mlen) and depth [p0, p0+kc) of op(A) into panels of kMr rows:
// out[(panel*kc + k)*kMr + r], zero padded past mlen.
template <typename T>
void pack_a_block(Trans trans, const T* a, index_t lda, index_t i0, index_t mlen, index_t p0,
                  index_t kc, T* out) {
  constexpr index_t mr = Tile<T>::kMr;
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

// One kMr x kNr tile of C over a K block. `first` marks the first K block, where beta applies.
template <typename T>
void micro_kernel(index_t kc, const T* a, const T* b, T* c, index_t ldc, index_t rows, index_t cols,
                  bool first, T beta) {
  constexpr index_t mr = Tile<T>::kMr, nr = Tile<T>::kNr;
  T acc[mr][nr] = {};
  for (index_t k = 0; k < kc; ++k) {
    const T* ak = a + k * mr;
    const T* bk = b + k * nr;
    for (index_t r = 0; r < mr; ++r) {
      const T ar = ak[r];
      for (index_t j = 0; j < nr; ++j) acc[r][j] += ar * bk[j];
    }
  }
  for (index_t r = 0; r < rows; ++r) {
    T* cr = c + r * ldc;
    if (!first || beta == T(1)) {
      for (index_t j = 0; j < cols; ++j) cr[j] += acc[r][j];
    } else if (beta == T(0)) {
      for (index_t j = 0; j < cols; ++j) cr[j] = acc[r][j];
    } else {
      for (index_t j = 0; j < cols; ++j) cr[j] = beta * cr[j] + acc[r][j];
    }
  }
}

template <typename T>
void scale_c(index_t m, index_t n, T beta, T* c, index_t ldc) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

}  // namespace

template <typename T>
PackedB<T>::PackedB(Trans trans, index_t k, index_t n, const T* b, index_t ldb) : k_(k), n_(n) {
  constexpr index_t nr = Tile<T>::kNr;
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
          const PackedB<T>& b, T beta, T* c, index_t ldc) {
  using Tl = Tile<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const index_t m_blocks = (m + Tl::kMc - 1) / Tl::kMc;
  const index_t n_blocks = (n + Tl::kNc - 1) / Tl::kNc;
  // About 256k multiply-adds a chunk keeps the fork cost small next to the work.
  const index_t work_per_block = std::min(m, Tl::kMc) * std::min(n, Tl::kNc) * k;
  const index_t grain =
      std::max<index_t>(1, (index_t{1} << 18) / std::max<index_t>(work_per_block, 1));
  parallel_for(m_blocks * n_blocks, grain, [&](index_t t0, index_t t1) {
    std::vector<T> a_pack(static_cast<size_t>(Tl::kMc * Tl::kKc));
    for (index_t t = t0; t < t1; ++t) {
      const index_t i0 = (t / n_blocks) * Tl::kMc, j0 = (t % n_blocks) * Tl::kNc;
      const index_t mlen = std::min(Tl::kMc, m - i0), nlen = std::min(Tl::kNc, n - j0);
      for (index_t p0 = 0; p0 < k; p0 += Tl::kKc) {
        const index_t kc = std::min(Tl::kKc, k - p0);
        pack_a_block(trans_a, a, lda, i0, mlen, p0, kc, a_pack.data());
        for (index_t jr = 0; jr < nlen; jr += Tl::kNr) {
          const T* b_panel = b.panel((j0 + jr) / Tl::kNr) + p0 * Tl::kNr;
          for (index_t ir = 0; ir < mlen; ir += Tl::kMr) {
            micro_kernel(kc, a_pack.data() + ir * kc, b_panel, c + (i0 + ir) * ldc + j0 + jr, ldc,
                         std::min(Tl::kMr, mlen - ir), std::min(Tl::kNr, nlen - jr), p0 == 0, beta);
          }
        }
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

#define RNNFAST_INSTANTIATE(T)                                                                     \
  template class PackedB<T>;                                                                       \
  template void gemm<T>(Trans, index_t, index_t, index_t, const T*, index_t, const PackedB<T>&, T, \
                        T*, index_t);                                                              \
  template void add_column_sums<T>(index_t, index_t, const T*, index_t, T*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast::kernels
