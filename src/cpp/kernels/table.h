// Runtime kernel dispatch: the table of kernel function pointers of each ISA this build has, and
// the one of the active ISA (runtime/isa.h).
#pragma once
#include <cstdint>

#include "kernels/cells/cell_list.h"
#include "kernels/recurrent.h"
#include "runtime/isa.h"
#include "runtime/types.h"

namespace rnnfast::kernels {

// One cell's step kernels (its recipe, kernels/cells/*_impl.h). The layer loops pick a cell's
// entry once per call and call through it, with no switch on the cell inside the time loop (as
// oneDNN's postgemm dispatcher picks its epilogue once).
template <typename T>
struct CellKernels {
  // One step: the recurrent product fused with the cell's gates (kernels/recurrent.h).
  void (*forward)(const ForwardStep<T>&) = nullptr;
  void (*backward)(const BackwardStep<T>&) = nullptr;
  // A two-part cell's second product, after every unit of the first (reset-before GRU: n from
  // W_hn (r*h); backward, dL/d(r*h)); null for one-part cells.
  void (*forward_part2)(const ForwardStep<T>&) = nullptr;
  void (*backward_part2)(const BackwardStep<T>&) = nullptr;
  bool relu = false;  // an Elman RNN's activation: ReLU, else tanh
};

template <typename T>
struct KernelTable {
  Isa isa;
  index_t mr;  // rows of an A panel
  index_t nr;  // columns of a B panel
  // C block (rows x cols, row stride ldc) = (or += when accumulate) A * packed B over one K block
  // of depth kc. A read in place: element (r, k) at a[r*a_rs + k*a_ks]. B: ceil(cols/nr) panels
  // of kc*nr, b_stride apart.
  void (*gemm_block)(index_t kc, index_t rows, index_t cols, const T* a, index_t a_rs, index_t a_ks,
                     const T* b, index_t b_stride, T* c, index_t ldc, bool accumulate);
  // The same product in bf16 pairs (kernels/bf16.h), `pairs` deep: A's pair (r, p) at
  // a[r*a_rs + p*a_ks], B's panels [p][nr] of words. Null in double tables.
  void (*gemm_block_bf16)(index_t pairs, index_t rows, index_t cols, const uint32_t* a,
                          index_t a_rs, index_t a_ks, const uint32_t* b, index_t b_stride, T* c,
                          index_t ldc, bool accumulate) = nullptr;
  // Rows of a float A (depth p of row i at a[i*rs + p*ks]) into bf16 pairs at dst[i*ld + p/2].
  void (*convert_a_bf16)(index_t rows, index_t depth, const float* a, index_t rs, index_t ks,
                         uint32_t* dst, index_t ld) = nullptr;
  // dst[j] = the bf16 pair (even[j], odd[j]) (odd null: zeros) for j < n. Null in double tables.
  void (*pair_rows_bf16)(const float* even, const float* odd, index_t n, uint32_t* dst) = nullptr;
  // One B panel of nr columns from `cols` rows of src (row stride ldb), zero padded:
  // dst[k*nr + j] = src[j*ldb + k].
  void (*pack_b_transposed)(index_t k, index_t cols, const T* src, index_t ldb, T* dst);
  // y[b*ldy + r] = sum over k < depth of w[r*ldw + k] * x[b*ldx + k] for r < rows, b < count:
  // weights in PyTorch's layout read in place (rnn/direct_step.h); each sum in one fixed order.
  void (*rows_dot)(index_t rows, index_t depth, const T* w, index_t ldw, const T* x, index_t ldx,
                   index_t count, T* y, index_t ldy);
  // y[i*ldy + j] = (accumulate ? y[i*ldy + j] : 0) + sum over k < depth of a[i*a_rs + k*a_ks] *
  // m[k*ldm + j] for i < rows, j < cols: a few rows of m combined (W^T dG and dG^T x of a single
  // step, rnn/direct_step.h); each sum in one fixed order whatever the split of the columns.
  void (*rows_combine)(index_t rows, index_t depth, index_t cols, const T* a, index_t a_rs,
                       index_t a_ks, const T* m, index_t ldm, T* y, index_t ldy, bool accumulate);
  // y = f(x) elementwise over n values; y may alias x.
  void (*exp)(index_t n, const T* x, T* y);
  void (*tanh)(index_t n, const T* x, T* y);
  void (*sigmoid)(index_t n, const T* x, T* y);
  // Fused recurrent steps (kernels/recurrent.h), on groups of `width` units: each cell's, indexed
  // by Cell, and the projected LSTM's second part and the final dh0, which every cell shares.
  index_t width;
  CellKernels<T> cells[kCellCount];
  void (*lstm_project)(const ForwardStep<T>&);
  void (*lstm_proj_dh)(const BackwardStep<T>&);
  void (*final_dh)(const BackwardStep<T>&);
  // The FMA throughput probe (kernels/peak_impl.h): `rounds` rounds of fma_chain_count
  // independent vector FMAs; returns a sum of their values.
  index_t fma_chain_count;
  T (*fma_chains)(index_t rounds, T seed);

  const CellKernels<T>& of(Cell cell) const { return cells[static_cast<int>(cell)]; }
};

// Whether every kernel of a table is set (kernels/table.cpp checks each ISA's tables once; not
// at compile time: with sanitizers a function's address is no constant expression).
// A two-part cell has both second parts, a one-part cell neither.
template <typename T>
constexpr bool complete(const KernelTable<T>& t) {
  bool ok = t.mr > 0 && t.nr > 0 && t.width > 0 && t.gemm_block && t.pack_b_transposed &&
            t.rows_dot && t.rows_combine && t.exp && t.tanh && t.sigmoid && t.lstm_project &&
            t.lstm_proj_dh && t.final_dh && t.fma_chain_count > 0 && t.fma_chains;
  if (sizeof(T) == 4) ok = ok && t.gemm_block_bf16 && t.convert_a_bf16 && t.pair_rows_bf16;
  for (const CellKernels<T>& c : t.cells)
    ok = ok && c.forward && c.backward && !c.forward_part2 == !c.backward_part2;
  return ok;
}

template <typename T>
const KernelTable<T>& active_kernels();  // of active_isa()

}  // namespace rnnfast::kernels
