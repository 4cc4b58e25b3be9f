#include "cells.h"

#include "kernels/table.h"

namespace rnnfast {
namespace {

// Stable for any x: exp never overflows, because its argument is <= 0.
template <typename T>
const kernels::KernelTable<T>& kt() {
  return kernels::active_kernels<T>();
}

// a[j] += b[j] for j < n.
template <typename T>
void add_row(index_t n, const T* b, T* a) {
  for (index_t j = 0; j < n; ++j) a[j] += b[j];
}

template <typename T>
void copy_row(index_t n, const T* src, T* dst) {
  for (index_t j = 0; j < n; ++j) dst[j] = src[j];
}
template <typename T>
void zero_row(index_t n, T* dst) {
  for (index_t j = 0; j < n; ++j) dst[j] = T(0);
}

// What an ended sequence does in a forward step: keep its state, record no gates.
template <typename T>
void carry_row(const StepForward<T>& s, index_t b, index_t g, bool lstm) {
  const index_t hd = s.hidden;
  copy_row(hd, s.h_prev + b * hd, s.h + b * hd);
  if (lstm) copy_row(hd, s.c_prev + b * hd, s.c + b * hd);
  zero_row(g * hd, s.gates + b * g * hd);
  if (s.extra) zero_row(hd, s.extra + b * hd);
}

template <typename T>
void rnn_row(const StepForward<T>& s, index_t b, bool relu) {
  const index_t hd = s.hidden;
  T* a = s.gates + b * hd;
  T* h = s.h + b * hd;
  add_row(hd, s.hh + b * hd, a);
  if (relu) {
    for (index_t j = 0; j < hd; ++j) a[j] = a[j] > T(0) ? a[j] : T(0);
  } else {
    kt<T>().tanh(hd, a, a);
  }
  copy_row(hd, a, h);
}

template <typename T>
void lstm_row(const StepForward<T>& s, index_t b) {
  const index_t hd = s.hidden;
  T* gi = s.gates + b * 4 * hd;
  T *gf = gi + hd, *gg = gi + 2 * hd, *go = gi + 3 * hd;
  const T* c_prev = s.c_prev + b * hd;
  T *c = s.c + b * hd, *h = s.h + b * hd;
  add_row(4 * hd, s.hh + b * 4 * hd, gi);
  kt<T>().sigmoid(2 * hd, gi, gi);  // i and f are adjacent
  kt<T>().tanh(hd, gg, gg);
  kt<T>().sigmoid(hd, go, go);
  for (index_t j = 0; j < hd; ++j) c[j] = gf[j] * c_prev[j] + gi[j] * gg[j];
  kt<T>().tanh(hd, c, h);
  for (index_t j = 0; j < hd; ++j) h[j] *= go[j];
}

template <typename T>
void gru_row(const StepForward<T>& s, index_t b) {
  const index_t hd = s.hidden;
  T* gr = s.gates + b * 3 * hd;
  T *gz = gr + hd, *gn = gr + 2 * hd;
  const T* r = s.hh + b * 3 * hd;
  const T* h_prev = s.h_prev + b * hd;
  T *h = s.h + b * hd, *hn_lin = s.extra + b * hd;
  add_row(2 * hd, r, gr);
  kt<T>().sigmoid(2 * hd, gr, gr);  // r and z are adjacent
  for (index_t j = 0; j < hd; ++j) {
    hn_lin[j] = r[2 * hd + j];
    gn[j] += gr[j] * hn_lin[j];
  }
  kt<T>().tanh(hd, gn, gn);
  for (index_t j = 0; j < hd; ++j) h[j] = (T(1) - gz[j]) * gn[j] + gz[j] * h_prev[j];
}

}  // namespace

template <typename T>
void forward_step(Cell cell, const StepForward<T>& s) {
  const index_t g = gate_count(cell);
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) {
      carry_row(s, b, g, cell == Cell::Lstm);
      continue;
    }
    switch (cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu:
        rnn_row(s, b, cell == Cell::RnnRelu);
        break;
      case Cell::Lstm:
        lstm_row(s, b);
        break;
      case Cell::Gru:
        gru_row(s, b);
        break;
      case Cell::GruResetBefore:
        break;  // two-part step, see gru_reset_before_*
    }
  }
}

template <typename T>
void gru_reset_before_gates(const StepForward<T>& s) {
  const index_t hd = s.hidden;
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) {
      carry_row(s, b, 3, false);
      continue;
    }
    T* gr = s.gates + b * 3 * hd;
    const T* h_prev = s.h_prev + b * hd;
    T* rh = s.extra + b * hd;
    add_row(2 * hd, s.hh + b * 3 * hd, gr);
    kt<T>().sigmoid(2 * hd, gr, gr);
    for (index_t j = 0; j < hd; ++j) rh[j] = gr[j] * h_prev[j];
  }
}

template <typename T>
void gru_reset_before_update(const StepForward<T>& s) {
  const index_t hd = s.hidden;
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) continue;  // carried in part 1
    T* gz = s.gates + b * 3 * hd + hd;
    T* gn = gz + hd;
    const T* h_prev = s.h_prev + b * hd;
    T* h = s.h + b * hd;
    add_row(hd, s.hh + b * 3 * hd + 2 * hd, gn);
    kt<T>().tanh(hd, gn, gn);
    for (index_t j = 0; j < hd; ++j) h[j] = (T(1) - gz[j]) * gn[j] + gz[j] * h_prev[j];
  }
}

template <typename T>
void backward_step(Cell cell, const StepBackward<T>& s) {
  const index_t hd = s.hidden, g = gate_count(cell), gh = g * hd;
  for (index_t b = 0; b < s.batch; ++b) {
    const T* dh = s.dh + b * hd;
    T* dgx = s.dgx + b * gh;
    T* dgh = s.dgh + b * gh;
    T* dh_prev = s.dh_prev + b * hd;
    if (!s.active[b]) {  // an ended sequence passes its gradient straight through
      copy_row(hd, dh, dh_prev);
      zero_row(gh, dgx);
      if (dgh != dgx) zero_row(gh, dgh);
      continue;
    }
    const T* gate = s.gates + b * gh;
    switch (cell) {
      case Cell::RnnTanh:
      case Cell::RnnRelu: {
        const T* h = s.h + b * hd;
        for (index_t j = 0; j < hd; ++j) {
          const T slope = cell == Cell::RnnRelu ? (h[j] > T(0) ? T(1) : T(0)) : T(1) - h[j] * h[j];
          dgx[j] = dh[j] * slope;
          dh_prev[j] = T(0);
        }
        break;
      }
      case Cell::Lstm: {
        const T *gi = gate, *gf = gate + hd, *gg = gate + 2 * hd, *go = gate + 3 * hd;
        const T *c_prev = s.c_prev + b * hd, *c = s.c + b * hd;
        T* dc = s.dc + b * hd;
        T* tanh_c = s.scratch;
        kt<T>().tanh(hd, c, tanh_c);
        for (index_t j = 0; j < hd; ++j) {
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
        const T *h_prev = s.h_prev + b * hd, *extra = s.extra + b * hd;
        for (index_t j = 0; j < hd; ++j) {
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
  const index_t hd = s.hidden;
  for (index_t b = 0; b < s.batch; ++b) {
    if (!s.active[b]) continue;
    const T* gr = s.gates + b * 3 * hd;
    const T* h_prev = s.h_prev + b * hd;
    const T* drh = d_rh + b * hd;
    T* dgx = s.dgx + b * 3 * hd;
    T* dh_prev = s.dh_prev + b * hd;
    for (index_t j = 0; j < hd; ++j) {
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
