#include "cells.h"

#include "kernels/table.h"

namespace rnnfast {
namespace {

template <typename T>
const kernels::KernelTable<T>& kt() {
  return kernels::active_kernels<T>();
}

template <typename T>
void add_to(index_t n, const T* b, T* a) {
  for (index_t j = 0; j < n; ++j) a[j] += b[j];
}
template <typename T>
void copy_to(index_t n, const T* src, T* dst) {
  for (index_t j = 0; j < n; ++j) dst[j] = src[j];
}
template <typename T>
void zero(index_t n, T* dst) {
  for (index_t j = 0; j < n; ++j) dst[j] = T(0);
}

// Where row b's pieces of a step live, restricted to the units [u0, u1).
template <typename T>
struct RowForward {
  index_t n, hd;     // units in the slice; H (the gate stride of `pre`)
  T* pre;            // gate g at pre + g*hd
  const T* bias;     // gate g at bias + g*hd, or null
  const T* rec;      // gate g at rec + g*rec_gate
  index_t rec_gate;  //
  const T *h_prev, *c_prev;
  T *h, *c, *extra;
};

template <typename T>
RowForward<T> row_of(const StepForward<T>& s, index_t b, index_t g) {
  const index_t off = b * s.hidden + s.u0;
  RowForward<T> r{};
  r.n = s.u1 - s.u0;
  r.hd = s.hidden;
  r.pre = s.gates + b * g * s.hidden + s.u0;
  r.bias = s.bias ? s.bias + s.u0 : nullptr;
  r.rec = s.hh + b * s.hh_ld;
  r.rec_gate = s.hh_gate;
  r.h_prev = s.h_prev + off;
  r.h = s.h + off;
  if (s.c) {
    r.c_prev = s.c_prev + off;
    r.c = s.c + off;
  }
  if (s.extra) r.extra = s.extra + off;
  return r;
}

// An ended sequence keeps its state and records no gates.
template <typename T>
void carry(const RowForward<T>& r, index_t g) {
  copy_to(r.n, r.h_prev, r.h);
  if (r.c) copy_to(r.n, r.c_prev, r.c);
  for (index_t k = 0; k < g; ++k) zero(r.n, r.pre + k * r.hd);
  if (r.extra) zero(r.n, r.extra);
}

// The pre-activation of gate k: input projection + recurrent product + bias.
template <typename T>
void sum_gate(const RowForward<T>& r, index_t k) {
  T* pre = r.pre + k * r.hd;
  const T* rec = r.rec + k * r.rec_gate;
  if (r.bias) {
    const T* bias = r.bias + k * r.hd;
    for (index_t j = 0; j < r.n; ++j) pre[j] += rec[j] + bias[j];
  } else {
    add_to(r.n, rec, pre);
  }
}

template <typename T>
void rnn_row(const RowForward<T>& r, bool relu) {
  sum_gate(r, 0);
  if (relu) {
    // NaN stays NaN, as in PyTorch (a comparison with NaN is false).
    for (index_t j = 0; j < r.n; ++j) r.pre[j] = r.pre[j] <= T(0) ? T(0) : r.pre[j];
  } else {
    kt<T>().tanh(r.n, r.pre, r.pre);
  }
  copy_to(r.n, r.pre, r.h);
}

template <typename T>
void lstm_row(const RowForward<T>& r) {
  T *gi = r.pre, *gf = r.pre + r.hd, *gg = r.pre + 2 * r.hd, *go = r.pre + 3 * r.hd;
  for (index_t k = 0; k < 4; ++k) sum_gate(r, k);
  kt<T>().sigmoid(r.n, gi, gi);
  kt<T>().sigmoid(r.n, gf, gf);
  kt<T>().tanh(r.n, gg, gg);
  kt<T>().sigmoid(r.n, go, go);
  for (index_t j = 0; j < r.n; ++j) r.c[j] = gf[j] * r.c_prev[j] + gi[j] * gg[j];
  kt<T>().tanh(r.n, r.c, r.h);
  for (index_t j = 0; j < r.n; ++j) r.h[j] *= go[j];
}

// r and z of a GRU row: pre-activation sums and sigmoids.
template <typename T>
void gru_reset_and_update_gates(const RowForward<T>& r) {
  for (index_t k = 0; k < 2; ++k) {
    sum_gate(r, k);
    kt<T>().sigmoid(r.n, r.pre + k * r.hd, r.pre + k * r.hd);
  }
}

// n is ready in pre + 2*hd: h = (1 - z) * n + z * h_prev.
template <typename T>
void gru_mix(const RowForward<T>& r) {
  const T *gz = r.pre + r.hd, *gn = r.pre + 2 * r.hd;
  for (index_t j = 0; j < r.n; ++j) r.h[j] = (T(1) - gz[j]) * gn[j] + gz[j] * r.h_prev[j];
}

template <typename T>
void gru_row(const RowForward<T>& r) {
  gru_reset_and_update_gates(r);
  const T* gr = r.pre;
  T* gn = r.pre + 2 * r.hd;
  const T* hn_lin = r.rec + 2 * r.rec_gate;  // W_hn h + b_hn
  const T* b_in = r.bias ? r.bias + 2 * r.hd : nullptr;
  for (index_t j = 0; j < r.n; ++j) {
    r.extra[j] = hn_lin[j];
    gn[j] += (b_in ? b_in[j] : T(0)) + gr[j] * hn_lin[j];
  }
  kt<T>().tanh(r.n, gn, gn);
  gru_mix(r);
}

}  // namespace

template <typename T>
void forward_step(Cell cell, const StepForward<T>& s) {
  const index_t g = gate_count(cell);
  for (index_t b = 0; b < s.batch; ++b) {
    const RowForward<T> r = row_of(s, b, g);
    if (!s.active[b]) {
      carry(r, g);
      continue;
    }
    switch (cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu:
        rnn_row(r, cell == Cell::RnnRelu);
        break;
      case Cell::Lstm:
        lstm_row(r);
        break;
      case Cell::Gru:
        gru_row(r);
        break;
      case Cell::GruResetBefore:
        break;  // two-part step, see gru_reset_before_*
    }
  }
}

template <typename T>
void gru_reset_before_gates(const StepForward<T>& s) {
  for (index_t b = 0; b < s.batch; ++b) {
    const RowForward<T> r = row_of(s, b, 3);
    if (!s.active[b]) {
      carry(r, 3);
      continue;
    }
    gru_reset_and_update_gates(r);
    for (index_t j = 0; j < r.n; ++j) r.extra[j] = r.pre[j] * r.h_prev[j];
  }
}

template <typename T>
void gru_reset_before_update(const StepForward<T>& s) {
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) continue;  // carried in part 1
    const RowForward<T> r = row_of(s, b, 3);
    T* gn = r.pre + 2 * r.hd;
    sum_gate(r, 2);  // W_in x + W_hn (r*h) + b_in + b_hn
    kt<T>().tanh(r.n, gn, gn);
    gru_mix(r);
  }
}

template <typename T>
void backward_step(Cell cell, const StepBackward<T>& s) {
  const index_t hd = s.hidden, g = gate_count(cell), gh = g * hd, n = s.u1 - s.u0;
  for (index_t b = 0; b < s.batch; ++b) {
    const index_t off = b * hd + s.u0, goff = b * gh + s.u0;
    const T* dh = s.dh + off;
    T* dgx = s.dgx + goff;  // gate k at dgx + k*hd
    T* dgh = s.dgh + goff;
    T* dh_prev = s.dh_prev + off;
    if (!s.active[b]) {  // an ended sequence passes its gradient straight through
      copy_to(n, dh, dh_prev);
      for (index_t k = 0; k < g; ++k) {
        zero(n, dgx + k * hd);
        if (dgh != dgx) zero(n, dgh + k * hd);
      }
      continue;
    }
    const T* gate = s.gates + goff;
    switch (cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu: {
        const T* h = s.h + off;
        for (index_t j = 0; j < n; ++j) {
          // ReLU's slope is 1 at NaN as in PyTorch, whose gradient passes there.
          const T slope = cell == Cell::RnnRelu ? (h[j] <= T(0) ? T(0) : T(1)) : T(1) - h[j] * h[j];
          dgx[j] = dh[j] * slope;
          dh_prev[j] = T(0);
        }
        break;
      }
      case Cell::Lstm: {
        const T *gi = gate, *gf = gate + hd, *gg = gate + 2 * hd, *go = gate + 3 * hd;
        const T *c_prev = s.c_prev + off, *c = s.c + off;
        T* dc = s.dc + off;
        T* tanh_c = s.scratch;
        kt<T>().tanh(n, c, tanh_c);
        for (index_t j = 0; j < n; ++j) {
          const T tc = tanh_c[j];
          const T dct = dc[j] + dh[j] * go[j] * (T(1) - tc * tc);
          dgx[j] = dct * gg[j] * gi[j] * (T(1) - gi[j]);
          dgx[hd + j] = dct * c_prev[j] * gf[j] * (T(1) - gf[j]);
          dgx[2 * hd + j] = dct * gi[j] * (T(1) - gg[j] * gg[j]);
          dgx[3 * hd + j] = dh[j] * tc * go[j] * (T(1) - go[j]);
          dc[j] = dct * gf[j];
          dh_prev[j] = T(0);
        }
        break;
      }
      case Cell::Gru:
      case Cell::GruResetBefore: {
        const T *gr = gate, *gz = gate + hd, *gn = gate + 2 * hd;
        const T *h_prev = s.h_prev + off, *extra = s.extra + off;
        for (index_t j = 0; j < n; ++j) {
          const T dan = dh[j] * (T(1) - gz[j]) * (T(1) - gn[j] * gn[j]);
          dgx[hd + j] = dh[j] * (h_prev[j] - gn[j]) * gz[j] * (T(1) - gz[j]);
          dgx[2 * hd + j] = dan;
          dh_prev[j] = dh[j] * gz[j];
          if (cell == Cell::Gru) {  // extra = W_hn h_prev + b_hn
            dgx[j] = dan * extra[j] * gr[j] * (T(1) - gr[j]);
            dgh[j] = dgx[j];
            dgh[hd + j] = dgx[hd + j];
            dgh[2 * hd + j] = dan * gr[j];
          } else {
            dgx[j] = T(0);  // needs dan W_hn first: gru_reset_before_backward_reset
          }
        }
        break;
      }
    }
  }
}

template <typename T>
void gru_reset_before_backward_reset(const StepBackward<T>& s, const T* d_rh) {
  const index_t hd = s.hidden, n = s.u1 - s.u0;
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) continue;
    const index_t off = b * hd + s.u0;
    const T* gr = s.gates + b * 3 * hd + s.u0;
    const T* h_prev = s.h_prev + off;
    const T* drh = d_rh + off;
    T* dgx = s.dgx + b * 3 * hd + s.u0;
    T* dh_prev = s.dh_prev + off;
    for (index_t j = 0; j < n; ++j) {
      dgx[j] = drh[j] * h_prev[j] * gr[j] * (T(1) - gr[j]);
      dh_prev[j] += drh[j] * gr[j];
    }
  }
}

#define RNNFAST_INSTANTIATE(T)                                     \
  template void forward_step<T>(Cell, const StepForward<T>&);      \
  template void gru_reset_before_gates<T>(const StepForward<T>&);  \
  template void gru_reset_before_update<T>(const StepForward<T>&); \
  template void backward_step<T>(Cell, const StepBackward<T>&);    \
  template void gru_reset_before_backward_reset<T>(const StepBackward<T>&, const T*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast
