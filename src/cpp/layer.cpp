#include "layer.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/gemm.h"

namespace rnnfast {
namespace {

using kernels::gemm;
using kernels::PackedB;
using kernels::Trans;

template <typename T>
std::vector<T> buffer(index_t n) {
  return std::vector<T>(static_cast<size_t>(std::max<index_t>(n, 0)), T(0));
}

// Biases added once to the input projection: b_ih + b_hh, except the n block of the
// linear-before-reset GRU, whose b_hn belongs inside r * (W_hn h + b_hn).
template <typename T>
std::vector<T> folded_bias(Cell cell, index_t gh, index_t hidden, const T* b_ih, const T* b_hh) {
  std::vector<T> bias = buffer<T>(gh);
  if (!b_ih) return bias;
  for (index_t j = 0; j < gh; ++j) {
    const bool inside_reset = cell == Cell::Gru && j >= 2 * hidden;
    bias[j] = inside_reset ? b_ih[j] : b_ih[j] + b_hh[j];
  }
  return bias;
}

// Sets every row of m (rows x n) to `row`.
template <typename T>
void fill_rows(index_t rows, index_t n, const T* row, T* m) {
  for (index_t i = 0; i < rows; ++i) std::copy(row, row + n, m + i * n);
}

// Which rows still run at step t.
void mark_active(const int64_t* lengths, index_t batch, index_t t, std::vector<uint8_t>& active) {
  for (index_t b = 0; b < batch; ++b) active[b] = !lengths || t < lengths[b];
}

// Index in hs/cs of the state step t starts from and of the one it makes.
inline index_t state_before(bool reverse, index_t t) {
  return reverse ? t + 1 : t;
}
inline index_t state_after(bool reverse, index_t t) {
  return reverse ? t : t + 1;
}

}  // namespace

template <typename T>
void layer_forward(const LayerForward<T>& a) {
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, gh = gate_count(a.cell) * hd;
  const index_t bh = batch * hd;
  const bool training = a.gates != nullptr, lstm = a.cell == Cell::Lstm;
  const bool reset_before = a.cell == Cell::GruResetBefore;

  // 1. Input projection of every step at once: pre = x W_ih^T + folded biases.
  std::vector<T> pre_store;
  if (!training) pre_store = buffer<T>(steps * batch * gh);
  T* pre = training ? a.gates : pre_store.data();
  const std::vector<T> bias = folded_bias(a.cell, gh, hd, a.b_ih, a.b_hh);
  fill_rows(steps * batch, gh, bias.data(), pre);
  gemm(Trans::No, steps * batch, gh, a.input, a.x, a.input,
       PackedB<T>(Trans::Yes, a.input, gh, a.w_ih, a.input), true, pre, gh);

  // 2. The recurrence, W_hh packed once. The hh rows start from the part of b_hh that is not
  // folded above (b_hn of the linear-before-reset GRU), zero otherwise.
  const index_t gh_first = reset_before ? 2 * hd : gh;  // columns of the first recurrent product
  const PackedB<T> w_first(Trans::Yes, hd, gh_first, a.w_hh, hd);
  const PackedB<T> w_n(Trans::Yes, hd, reset_before ? hd : 0, a.w_hh + 2 * hd * hd, hd);
  std::vector<T> hh_bias = buffer<T>(gh);
  if (a.cell == Cell::Gru && a.b_hh) std::copy(a.b_hh + 2 * hd, a.b_hh + 3 * hd, &hh_bias[2 * hd]);
  std::vector<T> hh = buffer<T>(batch * gh);

  // Inference keeps two state buffers (and GRU's extra); training writes states to the tape.
  std::vector<T> h_buf = buffer<T>(training ? 0 : 2 * bh), c_buf = buffer<T>(training ? 0 : 2 * bh);
  std::vector<T> extra_buf = buffer<T>(training ? 0 : bh);
  T* h_first =
      training ? a.hs + state_before(a.reverse, a.reverse ? steps - 1 : 0) * bh : h_buf.data();
  std::copy(a.h0, a.h0 + bh, h_first);
  if (lstm) {
    T* c_first = training ? a.cs + (h_first - a.hs) : c_buf.data();
    std::copy(a.c0, a.c0 + bh, c_first);
  }
  std::vector<uint8_t> active(static_cast<size_t>(batch));
  const T* h_last = h_first;
  const T* c_last = lstm ? (training ? a.cs + (h_first - a.hs) : c_buf.data()) : nullptr;

  for (index_t s = 0; s < steps; ++s) {
    const index_t t = a.reverse ? steps - 1 - s : s;
    mark_active(a.lengths, batch, t, active);
    StepForward<T> st{};
    st.batch = batch;
    st.hidden = hd;
    st.gates = pre + t * batch * gh;
    st.hh = hh.data();
    st.active = active.data();
    if (training) {
      st.h_prev = a.hs + state_before(a.reverse, t) * bh;
      st.h = a.hs + state_after(a.reverse, t) * bh;
      if (lstm) {
        st.c_prev = a.cs + state_before(a.reverse, t) * bh;
        st.c = a.cs + state_after(a.reverse, t) * bh;
      }
      if (a.extra) st.extra = a.extra + t * bh;
    } else {
      st.h_prev = h_buf.data() + (s % 2) * bh;
      st.h = h_buf.data() + ((s + 1) % 2) * bh;
      if (lstm) {
        st.c_prev = c_buf.data() + (s % 2) * bh;
        st.c = c_buf.data() + ((s + 1) % 2) * bh;
      }
      st.extra = is_gru(a.cell) ? extra_buf.data() : nullptr;
    }

    if (a.cell == Cell::Gru) fill_rows(batch, gh, hh_bias.data(), hh.data());
    gemm(Trans::No, batch, gh_first, hd, st.h_prev, hd, w_first, a.cell == Cell::Gru, hh.data(),
         gh);
    if (reset_before) {
      gru_reset_before_gates(st);
      gemm(Trans::No, batch, hd, hd, static_cast<const T*>(st.extra), hd, w_n, false,
           hh.data() + 2 * hd, gh);
      gru_reset_before_update(st);
    } else {
      forward_step(a.cell, st);
    }

    for (index_t b = 0; b < batch; ++b) {
      T* yr = a.y + (t * batch + b) * a.ldy;
      if (active[b]) {
        std::copy(st.h + b * hd, st.h + (b + 1) * hd, yr);
      } else {
        std::fill(yr, yr + hd, T(0));
      }
    }
    h_last = st.h;
    c_last = st.c;
  }
  std::copy(h_last, h_last + bh, a.h_n);
  if (lstm) std::copy(c_last, c_last + bh, a.c_n);
}

template <typename T>
void layer_backward(const LayerBackward<T>& a) {
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, gh = gate_count(a.cell) * hd;
  const index_t bh = batch * hd, rows = steps * batch;
  const bool lstm = a.cell == Cell::Lstm, reset_before = a.cell == Cell::GruResetBefore;

  // dL/d(pre-activations) of every step; the recurrent side differs only for linear-before-reset.
  std::vector<T> dgx = buffer<T>(rows * gh);
  std::vector<T> dgh_store = buffer<T>(a.cell == Cell::Gru ? rows * gh : 0);
  T* dgh = a.cell == Cell::Gru ? dgh_store.data() : dgx.data();

  std::vector<T> dh = buffer<T>(bh), dh_prev = buffer<T>(bh), dc = buffer<T>(lstm ? bh : 0);
  std::vector<T> d_rh = buffer<T>(reset_before ? bh : 0), scratch = buffer<T>(hd);
  if (a.dh_n) std::copy(a.dh_n, a.dh_n + bh, dh.begin());
  if (lstm && a.dc_n) std::copy(a.dc_n, a.dc_n + bh, dc.begin());

  // W_hh as the right operand of dh_prev = dG W_hh, packed once.
  const index_t gh_first = reset_before ? 2 * hd : gh;
  const PackedB<T> w_first(Trans::No, gh_first, hd, a.w_hh, hd);
  const PackedB<T> w_n(Trans::No, reset_before ? hd : 0, hd, a.w_hh + 2 * hd * hd, hd);
  std::vector<uint8_t> active(static_cast<size_t>(batch));

  for (index_t s = steps - 1; s >= 0; --s) {
    const index_t t = a.reverse ? steps - 1 - s : s;
    mark_active(a.lengths, batch, t, active);
    if (a.dy) {
      for (index_t b = 0; b < batch; ++b) {
        if (!active[b]) continue;  // y is a constant zero past the end: its gradient is dropped
        const T* dyr = a.dy + (t * batch + b) * a.ldy;
        for (index_t j = 0; j < hd; ++j) dh[b * hd + j] += dyr[j];
      }
    }
    StepBackward<T> st{};
    st.batch = batch;
    st.hidden = hd;
    st.gates = a.gates + t * batch * gh;
    st.h_prev = a.hs + state_before(a.reverse, t) * bh;
    st.h = a.hs + state_after(a.reverse, t) * bh;
    if (lstm) {
      st.c_prev = a.cs + state_before(a.reverse, t) * bh;
      st.c = a.cs + state_after(a.reverse, t) * bh;
      st.dc = dc.data();
    }
    if (a.extra) st.extra = a.extra + t * bh;
    st.dh = dh.data();
    st.dgx = dgx.data() + t * batch * gh;
    st.dgh = dgh + t * batch * gh;
    st.dh_prev = dh_prev.data();
    st.scratch = scratch.data();
    st.active = active.data();

    backward_step(a.cell, st);
    if (reset_before) {
      gemm(Trans::No, batch, hd, hd, static_cast<const T*>(st.dgx + 2 * hd), gh, w_n, false,
           d_rh.data(), hd);
      gru_reset_before_backward_reset(st, static_cast<const T*>(d_rh.data()));
    }
    gemm(Trans::No, batch, hd, gh_first, static_cast<const T*>(st.dgh), gh, w_first, true,
         dh_prev.data(), hd);
    std::swap(dh, dh_prev);
  }
  std::copy(dh.begin(), dh.end(), a.dh0);
  if (lstm) std::copy(dc.begin(), dc.end(), a.dc0);

  // Weight gradients and dx: one product each over all timesteps.
  const T* dgx_c = dgx.data();
  const T* dgh_c = dgh;
  gemm(Trans::No, rows, a.input, gh, dgx_c, gh, PackedB<T>(Trans::No, gh, a.input, a.w_ih, a.input),
       a.accumulate_dx, a.dx, a.input);
  gemm(Trans::Yes, gh, a.input, rows, dgx_c, gh, PackedB<T>(Trans::No, rows, a.input, a.x, a.input),
       true, a.dw_ih, a.input);
  const T* h_prev_all = a.hs + (a.reverse ? bh : 0);  // the state each step started from
  gemm(Trans::Yes, gh_first, hd, rows, dgh_c, gh, PackedB<T>(Trans::No, rows, hd, h_prev_all, hd),
       true, a.dw_hh, hd);
  if (reset_before) {  // W_hn multiplies r * h_prev, kept in extra
    gemm(Trans::Yes, hd, hd, rows, dgh_c + 2 * hd, gh, PackedB<T>(Trans::No, rows, hd, a.extra, hd),
         true, a.dw_hh + 2 * hd * hd, hd);
  }
  if (a.db_ih) kernels::add_column_sums(rows, gh, dgx_c, gh, a.db_ih);
  if (a.db_hh) kernels::add_column_sums(rows, gh, dgh_c, gh, a.db_hh);
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward<float>(const LayerBackward<float>&);
template void layer_backward<double>(const LayerBackward<double>&);

}  // namespace rnnfast
