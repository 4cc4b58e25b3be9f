// Dense matrix product C = op(A) * B (or C += ...), the workhorse of every cell.
//
// B is packed once into column panels in the layout of the active ISA's micro-kernel (a layer's
// weights are packed once and reused at every timestep and call); A is read in place. Every element
// of C is owned by one thread and summed over K in a fixed order (K blocks of kKc, then k
// ascending), so results do not depend on the thread count or the batch size.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/table.h"
#include "runtime/aligned.h"
#include "runtime/threads.h"

namespace rnnfast::kernels {

enum class Trans { No, Yes };

inline constexpr index_t kKc = 256;  // depth of a K block: fixed, it decides the summation order

// Rows of a time-major [T*B, ...] operand that belong to padding: row t*batch + b is padding
// when t >= lengths[b]. Packing writes zeros there, so that whatever padding holds (a carried
// NaN included) reaches no weight gradient, where 0 * NaN would.
struct PaddingRows {
  const int64_t* lengths = nullptr;  // null: no row is padding
  index_t batch = 1;
  bool padding(index_t row) const { return lengths && row / batch >= lengths[row % batch]; }
};

// Panels are kPanelPad values further apart than their size: panels whose size is a multiple of
// 4 KiB would otherwise share L1 sets (4K aliasing), and a one-row product streaming a dozen of
// them at once missed L1 on every step (it ran at half speed).
inline constexpr index_t kPanelPad = 16;

// op(B), a K x N matrix, packed into ceil(N / nr) panels of K rows by nr columns, zero padded.
// op(B)(k, j) = b[k*ldb + j] for Trans::No, b[j*ldb + k] for Trans::Yes. With `skip`, rows k of
// op(B) that are padding are packed as zeros (Trans::No only).
// With Precision::Bf16 (float only) the panels hold bf16 pairs (kernels/bf16.h): ceil(K/2) rows of
// nr words (zero rows after, to a multiple of 16), and products with it round A to bf16.
template <typename T>
class PackedB {
 public:
  PackedB(Trans trans, index_t k, index_t n, const T* b, index_t ldb, PaddingRows skip = {},
          Precision precision = Precision::Native);
  index_t rows() const { return k_; }
  index_t cols() const { return n_; }
  bool bf16() const { return pairs_ != nullptr; }
  const KernelTable<T>& kernels() const { return *kernels_; }
  // Between panels: values, or words for bf16 pairs; whole cache lines, so that every panel
  // starts on one (runtime/aligned.h) whatever K and the ISA's nr.
  index_t panel_stride() const { return stride_for(bf16()); }
  // A bf16 panel's rows: K's pairs, zero padded to whole AMX tiles (kernels/amx.h).
  index_t pair_rows() const { return (k_ + 31) / 32 * 16; }
  const T* panel(index_t p) const { return data_.get() + p * panel_stride(); }
  const uint32_t* pair_panel(index_t p) const { return pairs_.get() + p * panel_stride(); }
  // Row k of op(B) (N values, as the products see them) into out: a one-hot row of A times B.
  void copy_row(index_t k, T* out) const;

 private:
  void pack_pairs(Trans trans, const T* b, index_t ldb, PaddingRows skip);

  index_t stride_for(bool pairs) const {
    const index_t size = (pairs ? pair_rows() : k_) * kernels_->nr + kPanelPad;
    const index_t line = static_cast<index_t>(kCacheLine / (pairs ? sizeof(uint32_t) : sizeof(T)));
    return (size + line - 1) / line * line;
  }

  const KernelTable<T>* kernels_;
  index_t k_, n_;
  AlignedArray<T> data_;          // every element written by packing: no zeroing pass first
  AlignedArray<uint32_t> pairs_;  // bf16 instead of data_
};

// C (M x N, row stride ldc) = op(A) * B, or += with `accumulate`; op(A) is M x K:
// op(A)(i, k) = a[i*lda + k] for Trans::No, a[k*lda + i] for Trans::Yes. Without `accumulate` C
// is never read (it may hold garbage).
template <typename T>
void gemm(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const PackedB<T>& b, bool accumulate, T* c, index_t ldc);

// The same product computed by the calling thread alone (inside a parallel region, say), with
// `workspace` of gemm_workspace_size(kernels) values: nothing is allocated.
template <typename T>
void gemm_on_this_thread(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
                         const PackedB<T>& b, bool accumulate, T* c, index_t ldc, T* workspace);
// Room for one block of A at a padded stride (see gemm.cpp): mc rows of kKc, or kKc rows of mc.
// (A bf16 product's A block of pairs fits in the same room.)
template <typename T>
index_t gemm_workspace_size(const KernelTable<T>& kernels) {
  const index_t mc = kernels.mr * 12;
  return std::max(mc * (kKc + kPanelPad), kKc * (mc + kPanelPad));
}

// out[j] += sum_i a[i*lda + j] for j < n, summed over i in ascending order.
template <typename T>
void add_column_sums(index_t m, index_t n, const T* a, index_t lda, T* out);

}  // namespace rnnfast::kernels
