// Runtime kernel dispatch: the table of kernel function pointers of each ISA this build has, and
// the one of the active ISA (runtime/isa.h).
#pragma once
#include "kernels/recurrent.h"
#include "runtime/isa.h"
#include "runtime/types.h"

namespace rnnfast::kernels {

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
  // One B panel of nr columns from `cols` rows of src (row stride ldb), zero padded:
  // dst[k*nr + j] = src[j*ldb + k].
  void (*pack_b_transposed)(index_t k, index_t cols, const T* src, index_t ldb, T* dst);
  // y = f(x) elementwise over n values; y may alias x.
  void (*exp)(index_t n, const T* x, T* y);
  void (*tanh)(index_t n, const T* x, T* y);
  void (*sigmoid)(index_t n, const T* x, T* y);
  // Fused recurrent steps (kernels/recurrent.h), on groups of `width` units.
  index_t width;
  void (*rnn_forward)(const ForwardStep<T>&);
  void (*lstm_forward)(const ForwardStep<T>&);
  void (*lstm_project)(const ForwardStep<T>&);
  void (*gru_forward)(const ForwardStep<T>&);
  void (*gru_rb_gates)(const ForwardStep<T>&);
  void (*gru_rb_update)(const ForwardStep<T>&);
  void (*rnn_backward)(const BackwardStep<T>&);
  void (*lstm_backward)(const BackwardStep<T>&);
  void (*lstm_proj_dh)(const BackwardStep<T>&);
  void (*gru_backward)(const BackwardStep<T>&);
  void (*gru_rb_backward)(const BackwardStep<T>&);
  void (*gru_rb_backward_reset)(const BackwardStep<T>&);
  void (*final_dh)(const BackwardStep<T>&);
};

// Whether every kernel of a table is set (kernels/table.cpp checks each ISA's tables once; not
// at compile time: with sanitizers a function's address is no constant expression).
template <typename T>
constexpr bool complete(const KernelTable<T>& t) {
  return t.mr > 0 && t.nr > 0 && t.width > 0 && t.gemm_block && t.pack_b_transposed && t.exp &&
         t.tanh && t.sigmoid && t.rnn_forward && t.lstm_forward && t.lstm_project &&
         t.gru_forward && t.gru_rb_gates && t.gru_rb_update && t.rnn_backward && t.lstm_backward &&
         t.lstm_proj_dh && t.gru_backward && t.gru_rb_backward && t.gru_rb_backward_reset &&
         t.final_dh;
}

template <typename T>
const KernelTable<T>& active_kernels();  // of active_isa()

}  // namespace rnnfast::kernels
