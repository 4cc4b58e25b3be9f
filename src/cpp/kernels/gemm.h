// Dense matrix product C = beta*C + op(A) * B, the workhorse of every cell.
//
// B is packed once into column panels (the weights of a layer are packed once per call and reused
// at every timestep); A is packed per call in small blocks. Every element of C is owned by one
// thread and reduced over K in a fixed order (K blocks of kKc, then k ascending inside a block),
// so results do not depend on the thread count.
//
// The micro-kernel here is portable C++; per-ISA micro-kernels slot in behind the same packed
// layout without any change to the callers (cells and layer drivers).
#pragma once
#include <vector>

#include "threads.h"

namespace rnnfast::kernels {

enum class Trans { No, Yes };

template <typename T>
struct Tile {
  static constexpr index_t kMr = 4;                        // rows of a micro-tile
  static constexpr index_t kNr = sizeof(T) == 4 ? 16 : 8;  // columns of a micro-tile
  static constexpr index_t kKc = 256;                      // depth of a K block
  static constexpr index_t kMc = 64;                       // rows of a thread's C block
  static constexpr index_t kNc = 16 * kNr;                 // columns of a thread's C block
};

// op(B), a K x N matrix, packed into ceil(N / kNr) panels of K rows by kNr columns, zero padded.
// op(B)(k, j) = b[k*ldb + j] for Trans::No, b[j*ldb + k] for Trans::Yes.
template <typename T>
class PackedB {
 public:
  PackedB(Trans trans, index_t k, index_t n, const T* b, index_t ldb);
  index_t rows() const { return k_; }
  index_t cols() const { return n_; }
  const T* panel(index_t p) const { return data_.data() + p * k_ * Tile<T>::kNr; }

 private:
  index_t k_, n_;
  std::vector<T> data_;
};

// C (M x N, row stride ldc) = beta*C + op(A) * B, where op(A) is M x K:
// op(A)(i, k) = a[i*lda + k] for Trans::No, a[k*lda + i] for Trans::Yes.
// beta == 0 never reads C (it may hold garbage).
template <typename T>
void gemm(Trans trans_a, index_t m, index_t n, index_t k, const T* a, index_t lda,
          const PackedB<T>& b, T beta, T* c, index_t ldc);

// out[j] += sum_i a[i*lda + j] for j < n, summed over i in ascending order.
template <typename T>
void add_column_sums(index_t m, index_t n, const T* a, index_t lda, T* out);

}  // namespace rnnfast::kernels
