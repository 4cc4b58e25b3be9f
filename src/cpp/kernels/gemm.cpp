#include "kernels/gemm.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/amx.h"
#include "kernels/bf16.h"

namespace rnnfast::kernels {

template <typename T>
PackedB<T>::PackedB(Trans trans, index_t k, index_t n, const T* b, index_t ldb, PaddingRows skip,
                    Precision precision)
    : kernels_(&active_kernels<T>()), k_(k), n_(n) {
  if (precision == Precision::Bf16) {
    pack_pairs(trans, b, ldb, skip);
    return;
  }
  const index_t nr = kernels_->nr;
  const index_t panels = (n + nr - 1) / nr;
  data_ = aligned_array<T>(static_cast<size_t>(std::max<index_t>(panels * panel_stride(), 1)));
  T* data = data_.get();
  parallel_for(panels, std::max<index_t>(1, 4096 / std::max<index_t>(k, 1)),
               [&](index_t p0, index_t p1) {
                 for (index_t p = p0; p < p1; ++p) {
                   T* dst = data + p * panel_stride();
                   const index_t j0 = p * nr, cols = std::min(nr, n - j0);
                   if (trans == Trans::Yes) {  // rows of b are columns of op(B)
                     kernels_->pack_b_transposed(k, cols, b + j0 * ldb, ldb, dst);
                     continue;
                   }
                   for (index_t kk = 0; kk < k; ++kk) {  // a short contiguous copy per k
                     if (skip.padding(kk)) {
                       std::fill(dst + kk * nr, dst + (kk + 1) * nr, T(0));
                       continue;
                     }
                     std::copy(b + kk * ldb + j0, b + kk * ldb + j0 + cols, dst + kk * nr);
                     std::fill(dst + kk * nr + cols, dst + (kk + 1) * nr, T(0));
                   }
                 }
               });
}

template <typename T>
void PackedB<T>::pack_pairs(Trans trans, const T* b, index_t ldb, PaddingRows skip) {
  if constexpr (sizeof(T) != 4) {
    throw std::invalid_argument("precision: bf16 products need float32 operands");
  } else {
    const index_t nr = kernels_->nr, panels = (n_ + nr - 1) / nr, pairs = pair_rows();
    const index_t stride = stride_for(/*pairs=*/true);
    pairs_ = aligned_array<uint32_t>(static_cast<size_t>(std::max<index_t>(panels * stride, 1)));
    // op(B)(k, j), zero past K and on padding rows.
    auto at = [&](index_t kk, index_t j) -> float {
      if (kk >= k_ || skip.padding(kk)) return 0.0f;
      return trans == Trans::Yes ? b[j * ldb + kk] : b[kk * ldb + j];
    };
    parallel_for(panels, std::max<index_t>(1, 2048 / std::max<index_t>(pairs, 1)),
                 [&](index_t p0, index_t p1) {
                   for (index_t p = p0; p < p1; ++p) {
                     uint32_t* dst = pairs_.get() + p * stride;
                     const index_t j0 = p * nr, cols = std::min(nr, n_ - j0);
                     for (index_t q = 0; q < pairs; ++q) {
                       uint32_t* row = dst + q * nr;
                       std::fill(row + cols, row + nr, 0u);
                       const index_t k0 = 2 * q, k1 = 2 * q + 1;
                       if (trans == Trans::No) {  // two rows of b, paired a vector at a time
                         const bool has0 = k0 < k_ && !skip.padding(k0);
                         const bool has1 = k1 < k_ && !skip.padding(k1);
                         if (!has0 && !has1) {
                           std::fill(row, row + cols, 0u);
                         } else if (has0) {
                           kernels_->pair_rows_bf16(b + k0 * ldb + j0,
                                                    has1 ? b + k1 * ldb + j0 : nullptr, cols, row);
                         } else {  // only the odd row: pair it with zeros by hand
                           for (index_t j = 0; j < cols; ++j)
                             row[j] = bf16_pair(0.0f, b[k1 * ldb + j0 + j]);
                         }
                         continue;
                       }
                       for (index_t j = 0; j < cols; ++j)
                         row[j] = bf16_pair(at(k0, j0 + j), at(k1, j0 + j));
                     }
                   }
                 });
  }
}

template <typename T>
void PackedB<T>::copy_row(index_t k, T* out) const {
  const index_t nr = kernels_->nr;
  for (index_t j0 = 0; j0 < n_; j0 += nr) {
    const index_t cols = std::min(nr, n_ - j0);
    if (bf16()) {
      const uint32_t* src = pair_panel(j0 / nr) + (k / 2) * nr;
      for (index_t j = 0; j < cols; ++j)
        out[j0 + j] = static_cast<T>(float_of_bf16(static_cast<uint16_t>(src[j] >> (k % 2 * 16))));
      continue;
    }
    const T* src = panel(j0 / nr) + k * nr;
    std::copy(src, src + cols, out + j0);
  }
}

namespace {

// C is cut into blocks of mc x nc (an A block of mc x kKc and a B block of kKc x nc sit in L2).
// A task is one row block times a group of column blocks. With enough row blocks a group is the
// whole width (the A block stays in cache across it); otherwise groups are single column blocks,
// and when even those are fewer than the threads, blocks are made narrower (whole panels), then
// shorter (whole tiles): a 96 x 256 weight gradient was one task, on one thread. None of this
// changes how an element is summed.
template <typename T>
struct Blocking {
  index_t mc, nc, m_blocks = 0, n_blocks = 0, group = 1;
  Blocking(const KernelTable<T>& kt, index_t m, index_t n, int threads)
      : mc(kt.mr * 12), nc(kt.nr * 16) {
    if (ceil_div(m, mc) * ceil_div(n, nc) < threads) {
      const index_t col_blocks = ceil_div(threads, ceil_div(m, mc));
      nc = std::max(kt.nr, ceil_div(ceil_div(n, col_blocks), kt.nr) * kt.nr);
      if (ceil_div(m, mc) * ceil_div(n, nc) < threads) {
        const index_t row_blocks = ceil_div(threads, ceil_div(n, nc));
        mc = std::max(kt.mr, ceil_div(ceil_div(m, row_blocks), kt.mr) * kt.mr);
      }
    }
    // Row blocks of even height, as many as a multiple of the threads where that is close: 1024
    // rows in 8 blocks of 144 left the last one 16 rows, and one thread 22% less work.
    m_blocks = ceil_div(m, mc);
    if (m_blocks > 1 && m_blocks % threads) {
      const index_t even = ceil_div(m_blocks, threads) * threads;
      if (even * kt.mr * 2 <= m) m_blocks = even;  // blocks of two tiles or more
    }
    mc = ceil_div(ceil_div(m, m_blocks), kt.mr) * kt.mr;
    m_blocks = ceil_div(m, mc);
    n_blocks = ceil_div(n, nc);
    group = m_blocks >= 4 * threads ? n_blocks : 1;
  }
  index_t tasks() const { return m_blocks * ((n_blocks + group - 1) / group); }
};

// Whether A's rows share L1 sets: with a stride that is a multiple of 4 KiB, the rows a tile reads
// (a dozen rows of A, or kc rows of a transposed A) all map to one set of 8 ways and miss at every
// step (a 3200x256x1024 product ran 25% slower read in place than packed). Such blocks are copied
// at a padded stride first: a copy of whole rows, at memory speed.
template <typename T>
bool rows_alias(index_t lda) {
  return (lda * static_cast<index_t>(sizeof(T))) % 4096 == 0;
}

// Whether a task copies A's blocks to `work` at a padded stride before the tiles read them: when
// A's rows alias (above), and when A is transposed and the task's columns (`span`) reuse each
// block enough: in place, the tiles read a line of a transposed A (at lda) each depth step for
// every panel. Weight gradients (M x N x K) on a 2-core Sapphire Rapids-class Xeon, GFLOP/s in
// place vs copied, medians of five alternating runs, one thread: 1152 x 384 x 3200 93 vs 131,
// 800 x 200 x 560 110 vs 126, 512 x 128 x 100 148 vs 148; two threads: 195 vs 271, 198 vs 231;
// 128 x 128 x 3200 on two threads (two panels a task) lost up to 5% copied, and stays in place.
// (The tape's gates are at a padded stride, so a training call's dG never aliased: an LSTM
// 100 x 32 x 256 training call went from 60 to 49 ms.)
constexpr index_t kCopyTransposedPanels = 6;
template <typename T>
bool copies_a(Trans trans_a, index_t lda, index_t span, index_t nr) {
  return rows_alias<T>(lda) || (trans_a == Trans::Yes && span >= kCopyTransposedPanels * nr);
}

// One K block of a bf16 product for column blocks [nb0, nb1): A's block (mlen rows, kc deep)
// rounded to pairs in `work`, then each column block on AMX tiles or the vector kernel. The
// tiles read whole 16 x 16 blocks of A: its rows and pairs are zero padded to those multiples
// (B's panels are, by packing).
void bf16_block(const KernelTable<float>& kt, const PackedB<float>& b, index_t mlen, index_t kc,
                const float* a, index_t rs, index_t ks, index_t p0, index_t nb0, index_t nb1,
                index_t nc, index_t n, uint32_t* work, float* c, index_t ldc, bool accumulate) {
  const index_t pairs = (kc + 1) / 2;
#if defined(__x86_64__) || defined(_M_X64)
  if (amx_active()) {
    const index_t depth = round_up(pairs, kAmxDepth), ld = depth + kPanelPad;
    const index_t rows = round_up(mlen, kAmxRows);
    kt.convert_a_bf16(mlen, kc, a, rs, ks, work, ld);
    for (index_t i = 0; i < rows; ++i)
      std::fill(work + i * ld + (i < mlen ? pairs : 0), work + i * ld + depth, 0u);
    for (index_t nb = nb0; nb < nb1; ++nb) {
      const index_t j0 = nb * nc, nlen = std::min(nc, n - j0);
      amx_gemm_block_bf16(depth, mlen, nlen, work, ld, b.pair_panel(j0 / kt.nr) + p0 / 2 * kt.nr,
                          b.panel_stride(), kt.nr, c + j0, ldc, accumulate);
    }
    return;
  }
#endif
  const index_t ld = pairs + kPanelPad;
  kt.convert_a_bf16(mlen, kc, a, rs, ks, work, ld);
  for (index_t nb = nb0; nb < nb1; ++nb) {
    const index_t j0 = nb * nc, nlen = std::min(nc, n - j0);
    kt.gemm_block_bf16(pairs, mlen, nlen, work, ld, 1, b.pair_panel(j0 / kt.nr) + p0 / 2 * kt.nr,
                       b.panel_stride(), c + j0, ldc, accumulate);
  }
}

// Computes the tasks [t0, t1) of the product, A read in place (or, when copies_a, from a padded
// copy in `work`). Each C element is summed over the K blocks in ascending order whatever
// the task split.
template <typename T>
void gemm_blocks(const Blocking<T>& bl, index_t t0, index_t t1, Trans trans_a, index_t m, index_t n,
                 index_t k, const T* a, index_t lda, const PackedB<T>& b, bool accumulate, T* c,
                 index_t ldc, T* work) {
  const KernelTable<T>& kt = b.kernels();
  const index_t groups = (bl.n_blocks + bl.group - 1) / bl.group;
  for (index_t t = t0; t < t1; ++t) {
    const index_t i0 = (t / groups) * bl.mc, mlen = std::min(bl.mc, m - i0);
    const index_t nb0 = (t % groups) * bl.group, nb1 = std::min(bl.n_blocks, nb0 + bl.group);
    const bool copy = copies_a<T>(trans_a, lda, std::min(n, nb1 * bl.nc) - nb0 * bl.nc, kt.nr);
    for (index_t p0 = 0; p0 < k; p0 += kKc) {
      const index_t kc = std::min(kKc, k - p0);
      // op(A)'s block: row i, depth p at a[i*lda + p] (Trans::No) or a[p*lda + i] (Trans::Yes).
      const bool rows = trans_a == Trans::No;
      const T* ab = rows ? a + i0 * lda + p0 : a + p0 * lda + i0;
      index_t rs = rows ? lda : 1, ks = rows ? 1 : lda;
      if constexpr (sizeof(T) == 4) {
        if (b.bf16()) {  // A rounded to bf16 pairs once a block, reused by every column block
          bf16_block(kt, b, mlen, kc, ab, rs, ks, p0, nb0, nb1, bl.nc, n,
                     reinterpret_cast<uint32_t*>(work), c + i0 * ldc, ldc, accumulate || p0 > 0);
          continue;
        }
      }
      if (copy) {
        const index_t count = rows ? mlen : kc, length = rows ? kc : mlen;
        const index_t padded = length + kPanelPad;
        for (index_t i = 0; i < count; ++i)
          std::copy(ab + i * lda, ab + i * lda + length, work + i * padded);
        ab = work;
        (rows ? rs : ks) = padded;
      }
      for (index_t nb = nb0; nb < nb1; ++nb) {
        const index_t j0 = nb * bl.nc, nlen = std::min(bl.nc, n - j0);
        kt.gemm_block(kc, mlen, nlen, ab, rs, ks, b.panel(j0 / kt.nr) + p0 * kt.nr,
                      b.panel_stride(), c + i0 * ldc + j0, ldc, accumulate || p0 > 0);
      }
    }
  }
}

// k == 0: C = 0 (or unchanged when accumulating). Returns whether there is nothing else to do.
template <typename T>
bool trivial_product(index_t m, index_t n, index_t k, bool accumulate, T* c, index_t ldc) {
  if (m <= 0 || n <= 0) return true;
  if (k > 0) return false;
  if (!accumulate)
    for (index_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
  return true;
}

}  // namespace

template <typename T>
void gemm(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const PackedB<T>& b, bool accumulate, T* c, index_t ldc) {
  if (trivial_product(m, n, k, accumulate, c, ldc)) return;
  const Blocking<T> bl(b.kernels(), m, n, get_num_threads());
  // About 256k multiply-adds a chunk keeps the fork cost small next to the work.
  const index_t task_work = std::min(m, bl.mc) * std::min(n, bl.nc * bl.group) * k;
  const index_t grain = std::max<index_t>(1, (index_t{1} << 18) / std::max<index_t>(task_work, 1));
  parallel_for(bl.tasks(), grain, [&](index_t t0, index_t t1) {
    // On a line boundary (tiles read A's rows of pairs there, and a row across two lines cost a
    // tile load twice: runtime/aligned.h) and left uninitialised: gemm_blocks writes what it
    // reads. Zeroing it (a std::vector) wrote 157 KB a task, a tenth of a B = 1 bf16 RNN(128)
    // training call's time.
    // (A task's columns are at most n: none copies A when the whole width would not.)
    const bool needed = copies_a<T>(trans_a, lda, n, b.kernels().nr) || b.bf16();
    const AlignedArray<T> work =
        needed ? aligned_array<T>(static_cast<size_t>(gemm_workspace_size(b.kernels())))
               : AlignedArray<T>();
    gemm_blocks(bl, t0, t1, trans_a, m, n, k, a, lda, b, accumulate, c, ldc, work.get());
  });
}

template <typename T>
void gemm_on_this_thread(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
                         const PackedB<T>& b, bool accumulate, T* c, index_t ldc, T* workspace) {
  if (trivial_product(m, n, k, accumulate, c, ldc)) return;
  const Blocking<T> bl(b.kernels(), m, n, 1);
  gemm_blocks(bl, 0, bl.tasks(), trans_a, m, n, k, a, lda, b, accumulate, c, ldc, workspace);
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
  template void gemm_on_this_thread<T>(Trans, index_t, index_t, index_t, const T*, index_t,     \
                                       const PackedB<T>&, bool, T*, index_t, T*);               \
  template class PackedB<T>;                                                                    \
  template void gemm<T>(Trans, index_t, index_t, index_t, const T*, index_t, const PackedB<T>&, \
                        bool, T*, index_t);                                                     \
  template void add_column_sums<T>(index_t, index_t, const T*, index_t, T*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast::kernels
