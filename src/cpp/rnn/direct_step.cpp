#include "rnn/direct_step.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/table.h"
#include "rnn/cell.h"
#include "runtime/aligned.h"
#include "runtime/threads.h"

namespace rnnfast {
namespace {

// Multiply-adds a thread takes at least before a second one joins: the weights stream from L2
// (a 2 x 256 KiB LSTM layer at H = 128 in about 5 us on one core), and a team's start and end
// cost about a microsecond.
constexpr index_t kMinMacsPerThread = index_t{1} << 15;

// A step runs alone, whatever the team may be, while its weights (read once) are few and its
// product small: a second thread saves part of an L2 stream of a microsecond or two, and one
// called after the gaps of a Python loop (autograd, torch's operators) was often asleep. A
// 2-core Sapphire Rapids, 100-step RNNCell(128) loops at B = 8, per step, 1 thread against 2:
// inference 20.1 vs 22.4 us, training 65.7 vs 77.4 (its backward 32 vs 43); LSTMCell(128) at
// B = 1 (512 KiB of weights): training 130 vs 106, a team's gain.
constexpr index_t kTeamMinWeightBytes = index_t{192} << 10;
constexpr index_t kTeamMinMacs = index_t{1} << 20;

// The grain of a split of `units` (of unit_macs each) in a step of `macs` over weights of
// `weight_bytes`: chunks of at least kMinMacsPerThread multiply-adds and 16 units, or all of
// `units` on one thread (above; not with always_team(), so tests comparing thread counts still
// split small steps).
index_t team_grain(index_t units, index_t unit_macs, index_t macs, index_t weight_bytes) {
  if (!always_team() && weight_bytes < kTeamMinWeightBytes && macs < kTeamMinMacs) return units;
  return std::max<index_t>(16, (kMinMacsPerThread + unit_macs - 1) / unit_macs);
}

// Rows of the weights compared with the copy just before the product reads them (from L1
// then, not a second time from L2).
constexpr index_t kCompareRows = 16;

template <typename T>
bool same_values(const T* a, const T* b, index_t count) {
  return std::memcmp(a, b, static_cast<size_t>(count) * sizeof(T)) == 0;
}

// The pre-activations of units [lo, lo + n) of every batch row b: gx[b*ld + g*n + u] = W_ih x_b +
// b_ih and gh[...] = W_hh h_b + b_hh for each gate block g (gh the bias alone without h), where
// ld = G*n. With `copy`, also whether those rows of the weights hold its values (they are
// compared a few rows at a time, each just before its product).
template <typename T>
bool unit_products(const kernels::KernelTable<T>& k, const StackSpec& spec,
                   const LayerWeights<T>& w, index_t lo, index_t n, index_t batch, const T* x,
                   const T* h, T* gx, T* gh, const LayerWeights<T>* copy) {
  const index_t in = spec.input, hd = spec.hidden, gates = cell_info(spec.cell).gates;
  const index_t ld = gates * n;
  bool same = true;
  // The product of rows [r, r + m) of one matrix (depth d) and of `v`, into `out` + (r - row).
  const auto product = [&](const T* live, const T* kept, index_t row, index_t d, const T* v,
                           T* out) {
    for (index_t r = row; r < row + n; r += kCompareRows) {
      const index_t m = std::min(kCompareRows, row + n - r);
      if (kept && same) same = same_values(live + r * d, kept + r * d, m * d);
      k.rows_dot(m, d, live + r * d, d, v, d, batch, out + (r - row), ld);
    }
  };
  for (index_t g = 0; g < gates; ++g) {
    const index_t row = g * hd + lo;
    product(w.w_ih, copy ? copy->w_ih : nullptr, row, in, x, gx + g * n);
    if (h) {
      product(w.w_hh, copy ? copy->w_hh : nullptr, row, hd, h, gh + g * n);
    } else if (copy && same) {
      same = same_values(w.w_hh + row * hd, copy->w_hh + row * hd, n * hd);
    }
    if (copy && same && w.b_ih)
      same = same_values(w.b_ih + row, copy->b_ih + row, n) &&
             same_values(w.b_hh + row, copy->b_hh + row, n);
    for (index_t b = 0; b < batch; ++b) {
      T *xs = gx + b * ld + g * n, *hs = gh + b * ld + g * n;
      if (!h) std::fill(hs, hs + n, T(0));
      if (!w.b_ih) continue;
      for (index_t u = 0; u < n; ++u) {
        xs[u] += w.b_ih[row + u];
        hs[u] += w.b_hh[row + u];
      }
    }
  }
  return same;
}

// The cell's update of n units from their pre-activations (gx, gh; overwritten), the unit's
// previous state at h0/c0 (null: zeros), written to h/c. The same formulas as the fused kernels
// (kernels/cells/*_impl.h), with the ISA's own activations.
template <typename T>
void unit_update(const kernels::KernelTable<T>& k, Cell cell, index_t n, T* gx, T* gh, const T* h0,
                 const T* c0, T* h, T* c) {
  switch (cell) {
    case Cell::RnnTanh:
    case Cell::RnnRelu:
      for (index_t u = 0; u < n; ++u) gx[u] += gh[u];
      if (cell == Cell::RnnTanh) {
        k.tanh(n, gx, h);
      } else {
        for (index_t u = 0; u < n; ++u) h[u] = T(0) >= gx[u] ? T(0) : gx[u];  // NaN stays NaN
      }
      return;
    case Cell::Lstm: {  // gates i, f, g, o
      for (index_t u = 0; u < 4 * n; ++u) gx[u] += gh[u];
      T *i = gx, *f = gx + n, *g = gx + 2 * n, *o = gx + 3 * n;
      k.sigmoid(2 * n, i, i);  // i and f
      k.tanh(n, g, g);
      k.sigmoid(n, o, o);
      for (index_t u = 0; u < n; ++u) c[u] = f[u] * (c0 ? c0[u] : T(0)) + i[u] * g[u];
      k.tanh(n, c, gh);
      for (index_t u = 0; u < n; ++u) h[u] = o[u] * gh[u];
      return;
    }
    case Cell::Gru: {  // gates r, z, n; n = tanh(x_n + r * (W_hn h + b_hn))
      for (index_t u = 0; u < 2 * n; ++u) gx[u] += gh[u];
      T *r = gx, *z = gx + n, *xn = gx + 2 * n;
      const T* hn = gh + 2 * n;
      k.sigmoid(2 * n, r, r);  // r and z
      for (index_t u = 0; u < n; ++u) xn[u] += r[u] * hn[u];
      k.tanh(n, xn, xn);
      for (index_t u = 0; u < n; ++u) {
        const T prev = h0 ? h0[u] : T(0);
        h[u] = z[u] * prev + (T(1) - z[u]) * xn[u];
      }
      return;
    }
    case Cell::GruResetBefore:
      break;
  }
  throw std::logic_error("direct_step: a cell it does not run");
}

// Values a row keeps (direct_saved_per_row), in units of `hidden`.
index_t saved_slots(Cell cell) {
  switch (cell) {
    case Cell::Lstm:
      return 5;  // i, f, g, o, tanh(c)
    case Cell::Gru:
      return 4;  // r, z, n, W_hn h + b_hn
    default:
      return 1;  // h
  }
}

// What unit_update left in the scratch of n units of one row, into that row's `saved` at unit lo.
template <typename T>
void keep_units(Cell cell, index_t hd, index_t lo, index_t n, const T* gx, const T* gh, const T* h,
                T* saved) {
  const auto copy = [&](const T* from, index_t slot) {
    std::copy(from, from + n, saved + slot * hd + lo);
  };
  switch (cell) {
    case Cell::Lstm:
      for (index_t s = 0; s < 4; ++s) copy(gx + s * n, s);
      copy(gh, 4);  // tanh(c), left there by unit_update
      return;
    case Cell::Gru:
      for (index_t s = 0; s < 3; ++s) copy(gx + s * n, s);
      copy(gh + 2 * n, 3);
      return;
    default:
      copy(h, 0);
      return;
  }
}

// The pre-activations' gradients of n units of one row, from the row's `saved` (at unit lo) and
// dh, dc, h0, c0 of those units (null: zeros): da_h [G*n-strided by gate, at hd] for the
// recurrent side, da_x for the input side (differs from da_h only in the GRU's n block), dc0 and
// the part of dh0 that skips the product (GRU: dh z) written where given. The formulas of the
// fused kernels (kernels/cells/*_impl.h).
template <typename T>
void unit_gradients(Cell cell, index_t hd, index_t lo, index_t n, const T* saved, const T* dh,
                    const T* dc, const T* h0, const T* c0, T* da_h, T* da_x, T* dc0, T* dh0) {
  const T one(1);
  const T* sv = saved + lo;
  for (index_t u = 0; u < n; ++u) {
    const T d = dh ? dh[u] : T(0);
    switch (cell) {
      case Cell::Lstm: {
        const T i = sv[u], f = sv[hd + u], g = sv[2 * hd + u], o = sv[3 * hd + u];
        const T tc = sv[4 * hd + u];
        const T dct = d * o * (one - tc * tc) + (dc ? dc[u] : T(0));
        da_h[u] = dct * g * i * (one - i);
        da_h[hd + u] = dct * (c0 ? c0[u] : T(0)) * f * (one - f);
        da_h[2 * hd + u] = dct * i * (one - g * g);
        da_h[3 * hd + u] = d * tc * o * (one - o);
        if (dc0) dc0[u] = dct * f;
        break;
      }
      case Cell::Gru: {
        const T r = sv[u], z = sv[hd + u], nn = sv[2 * hd + u], hn = sv[3 * hd + u];
        const T prev = h0 ? h0[u] : T(0);
        const T dan = d * (one - z) * (one - nn * nn);
        const T dr = dan * hn * r * (one - r);
        const T dz = d * (prev - nn) * z * (one - z);
        da_h[u] = da_x[u] = dr;
        da_h[hd + u] = da_x[hd + u] = dz;
        da_h[2 * hd + u] = dan * r;  // W_hn multiplies h inside r * (W_hn h + b_hn)
        da_x[2 * hd + u] = dan;
        if (dh0) dh0[u] = d * z;
        break;
      }
      case Cell::RnnTanh:
        da_h[u] = d * (one - sv[u] * sv[u]);
        break;
      case Cell::RnnRelu:  // relu' = 0 where h <= 0, else 1 (NaN included, as in PyTorch)
        da_h[u] = T(0) >= sv[u] ? T(0) : d;
        break;
      case Cell::GruResetBefore:
        throw std::logic_error("direct_backward: a cell it does not run");
    }
  }
}

}  // namespace

bool direct_step_runs(const StackSpec& spec) {
  return spec.layers == 1 && spec.directions == 1 && spec.proj == 0 && !spec.peepholes &&
         !cell_info(spec.cell).two_part;
}

index_t direct_saved_per_row(const StackSpec& spec) {
  return saved_slots(spec.cell) * spec.hidden;
}

void require_direct_step(const StackSpec& spec) {
  if (!direct_step_runs(spec)) {
    throw std::invalid_argument(
        std::string("direct step: runs one layer and one direction without projection or "
                    "peepholes, of a cell with one product a step; got ") +
        cell_info(spec.cell).name + " with " + std::to_string(spec.layers) + " layer(s), " +
        std::to_string(spec.directions) + " direction(s)");
  }
}

namespace {

// `spec`'s layer `layer` as a one-layer stack of its own.
StackSpec layer_alone(const StackSpec& spec, index_t layer) {
  StackSpec one = spec;
  one.input = spec.layer_input(layer);
  one.layers = 1;
  return one;
}

}  // namespace

bool direct_stack_runs(const StackSpec& spec) {
  return spec.layers >= 1 && direct_step_runs(layer_alone(spec, 0));
}

namespace {

void check_runs(const StackSpec& spec, index_t batch) {
  require_direct_step(spec);
  if (batch < 0) throw std::invalid_argument("batch: expected >= 0, got " + std::to_string(batch));
}

}  // namespace

template <typename T>
WeightsCopy<T>::WeightsCopy(const StackSpec& spec, const LayerWeights<T>& w) {
  const index_t gh = cell_info(spec.cell).gates * spec.hidden;
  const index_t n_ih = gh * spec.input, n_hh = gh * spec.hidden, n_b = spec.bias ? gh : 0;
  values_.resize(static_cast<size_t>(n_ih + n_hh + 2 * n_b));
  T* at = values_.data();
  const auto take = [&](const T* from, index_t n) {
    std::copy(from, from + n, at);
    at += n;
    return at - n;
  };
  view_.w_ih = take(w.w_ih, n_ih);
  view_.w_hh = take(w.w_hh, n_hh);
  if (spec.bias) {
    view_.b_ih = take(w.b_ih, n_b);
    view_.b_hh = take(w.b_hh, n_b);
  }
}

template <typename T>
bool WeightsCopy<T>::same_units(const StackSpec& spec, const LayerWeights<T>& w, index_t lo,
                                index_t hi) const {
  const index_t in = spec.input, hd = spec.hidden, n = hi - lo;
  const auto same = same_values<T>;
  for (index_t g = 0; g < cell_info(spec.cell).gates; ++g) {
    const index_t row = g * hd + lo;
    if (!same(w.w_ih + row * in, view_.w_ih + row * in, n * in) ||
        !same(w.w_hh + row * hd, view_.w_hh + row * hd, n * hd))
      return false;
    if (spec.bias &&
        (!same(w.b_ih + row, view_.b_ih + row, n) || !same(w.b_hh + row, view_.b_hh + row, n)))
      return false;
  }
  return true;
}

template <typename T>
void direct_step(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                 const T* h0, const T* c0, T* h, T* c, T* saved,
                 std::shared_ptr<const WeightsCopy<T>>* copy) {
  check_runs(spec, batch);
  if (batch == 0) {
    if (copy && (!*copy || !(*copy)->same_units(spec, w, 0, spec.hidden)))
      *copy = std::make_shared<const WeightsCopy<T>>(spec, w);
    return;
  }
  const kernels::KernelTable<T>& k = kernels::active_kernels<T>();
  const index_t in = spec.input, hd = spec.hidden, gates = cell_info(spec.cell).gates;
  const bool lstm = spec.cell == Cell::Lstm;
  const index_t kept = direct_saved_per_row(spec);
  const index_t unit_macs = gates * (in + hd) * batch;
  const index_t weight_bytes = gates * hd * (in + hd) * index_t{sizeof(T)};
  const index_t grain = team_grain(hd, unit_macs, spec.macs(1, batch), weight_bytes);
  // Scratch for every unit's pre-activations, taken before the team starts (an exception
  // cannot leave a parallel region); unit_products writes all of it.
  const AlignedArray<T> scratch = aligned_array<T>(static_cast<size_t>(2 * gates * hd * batch));
  // Whether the weights still equal *copy, each thread looking at its own rows as its product
  // reads them.
  const WeightsCopy<T>* last = copy ? copy->get() : nullptr;
  std::atomic<bool> changed{copy && !last};
  const CallTeam team(spec.macs(1, batch));
  // Each thread takes a range of units of every batch row, reading its rows of the weights once
  // (from its own L2 when called again).
  parallel_for(hd, grain, [&](index_t lo, index_t hi) {
    const index_t n = hi - lo, ld = gates * n;
    T* gx = scratch.get() + 2 * gates * lo * batch;
    T* gh = gx + ld * batch;
    if (!unit_products(k, spec, w, lo, n, batch, x, h0, gx, gh, last ? &last->weights() : nullptr))
      changed.store(true, std::memory_order_relaxed);
    for (index_t b = 0; b < batch; ++b) {
      const index_t at = b * hd + lo;
      unit_update(k, spec.cell, n, gx + b * ld, gh + b * ld, h0 ? h0 + at : nullptr,
                  lstm && c0 ? c0 + at : nullptr, h + at, lstm ? c + at : nullptr);
      if (saved)
        keep_units(spec.cell, hd, lo, n, gx + b * ld, gh + b * ld, h + at, saved + b * kept);
    }
  });
  if (changed.load()) *copy = std::make_shared<const WeightsCopy<T>>(spec, w);
}

template <typename T>
void direct_backward(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                     const T* h0, const T* c0, const T* saved, const T* dh, const T* dc, T* dx,
                     T* dh0, T* dc0, const DirectGrads<T>& g) {
  check_runs(spec, batch);
  const index_t in = spec.input, hd = spec.hidden, gates = cell_info(spec.cell).gates;
  const index_t gh = gates * hd, kept = direct_saved_per_row(spec);
  const bool lstm = spec.cell == Cell::Lstm, gru = spec.cell == Cell::Gru;
  if (batch == 0) {
    if (!g.add) {
      std::fill(g.w_ih, g.w_ih + gh * in, T(0));
      std::fill(g.w_hh, g.w_hh + gh * hd, T(0));
      if (g.b_ih) std::fill(g.b_ih, g.b_ih + gh, T(0));
      if (g.b_hh) std::fill(g.b_hh, g.b_hh + gh, T(0));
    }
    return;
  }
  const kernels::KernelTable<T>& k = kernels::active_kernels<T>();
  // The pre-activations' gradients [B, G*H], recurrent side and (GRU) input side, every value
  // written by unit_gradients.
  const AlignedArray<T> scratch = aligned_array<T>(static_cast<size_t>((gru ? 2 : 1) * batch * gh));
  T* da_h = scratch.get();
  T* da_x = gru ? da_h + batch * gh : da_h;
  const CallTeam team(2 * spec.macs(1, batch));
  const index_t unit_macs = gates * (in + hd) * batch;
  const index_t weight_bytes = gh * (in + hd) * index_t{sizeof(T)};
  const index_t macs = spec.macs(1, batch);  // of the forward: team_grain's measure
  const index_t unit_grain = team_grain(hd, unit_macs, macs, weight_bytes);
  // Units split: each thread the gradients of its units' pre-activations, then its rows of the
  // weights' gradients (outer products over the batch rows), written once.
  parallel_for(hd, unit_grain, [&](index_t lo, index_t hi) {
    const index_t n = hi - lo;
    for (index_t b = 0; b < batch; ++b) {
      const index_t at = b * hd + lo;
      unit_gradients(spec.cell, hd, lo, n, saved + b * kept, dh ? dh + at : nullptr,
                     dc ? dc + at : nullptr, h0 ? h0 + at : nullptr, c0 ? c0 + at : nullptr,
                     da_h + b * gh + lo, da_x + b * gh + lo, lstm && c0 && dc0 ? dc0 + at : nullptr,
                     gru && h0 && dh0 ? dh0 + at : nullptr);
    }
    for (index_t gate = 0; gate < gates; ++gate) {
      const index_t row = gate * hd + lo;
      k.rows_combine(n, batch, in, da_x + row, 1, gh, x, in, g.w_ih + row * in, in, g.add);
      if (h0) {
        k.rows_combine(n, batch, hd, da_h + row, 1, gh, h0, hd, g.w_hh + row * hd, hd, g.add);
      } else if (!g.add) {
        std::fill(g.w_hh + row * hd, g.w_hh + (row + n) * hd, T(0));
      }
      if (!g.b_ih) continue;
      for (index_t u = row; u < row + n; ++u) {
        T sx(0), sh(0);
        for (index_t b = 0; b < batch; ++b) {
          sx += da_x[b * gh + u];
          sh += da_h[b * gh + u];
        }
        g.b_ih[u] = g.add ? g.b_ih[u] + sx : sx;
        g.b_hh[u] = g.add ? g.b_hh[u] + sh : sh;
      }
    }
  });
  // Columns split: dx = da_x W_ih and dh0 = (GRU: dh z +) da_h W_hh, each thread its columns of
  // both over every row of the weights (a sum over all units, which no units split could give
  // in one order).
  const bool want_dx = dx != nullptr, want_dh0 = h0 && dh0;
  if (!want_dx && !want_dh0) return;
  const index_t cols = (want_dx ? in : 0) + (want_dh0 ? hd : 0);
  const index_t col_macs = gh * batch;
  const index_t col_grain = team_grain(cols, col_macs, macs, weight_bytes);
  parallel_for(cols, col_grain, [&](index_t lo, index_t hi) {
    const index_t x_cols = want_dx ? in : 0;
    if (lo < x_cols) {
      const index_t end = std::min(hi, x_cols);
      k.rows_combine(batch, gh, end - lo, da_x, gh, 1, w.w_ih + lo, in, dx + lo, in, false);
    }
    if (hi > x_cols) {
      const index_t from = std::max(lo, x_cols) - x_cols, to = hi - x_cols;
      k.rows_combine(batch, gh, to - from, da_h, gh, 1, w.w_hh + from, hd, dh0 + from, hd, gru);
    }
  });
}

template <typename T>
void direct_stack_step(const StackSpec& spec, const StackParams<T>& params, index_t batch,
                       const T* x, const T* h0, const T* c0, T* h, T* c) {
  if (!direct_stack_runs(spec)) {
    throw std::invalid_argument(
        std::string("direct stack step: runs one direction without projection or peepholes, of "
                    "a cell with one product a step; got ") +
        cell_info(spec.cell).name + " with " + std::to_string(spec.directions) + " direction(s)" +
        (spec.proj ? ", a projection" : "") + (spec.peepholes ? ", peepholes" : ""));
  }
  check_runs(layer_alone(spec, 0), batch);
  const bool lstm = spec.cell == Cell::Lstm;
  const index_t rows = batch * spec.hidden;  // one layer's state
  for (index_t l = 0; l < spec.layers; ++l) {
    const index_t at = l * rows;
    direct_step(layer_alone(spec, l), params.layers[static_cast<size_t>(l)], batch,
                l == 0 ? x : h + at - rows, h0 ? h0 + at : nullptr, lstm && c0 ? c0 + at : nullptr,
                h + at, lstm ? c + at : nullptr);
  }
}

template class WeightsCopy<float>;
template class WeightsCopy<double>;
template void direct_step<float>(const StackSpec&, const LayerWeights<float>&, index_t,
                                 const float*, const float*, const float*, float*, float*, float*,
                                 std::shared_ptr<const WeightsCopy<float>>*);
template void direct_step<double>(const StackSpec&, const LayerWeights<double>&, index_t,
                                  const double*, const double*, const double*, double*, double*,
                                  double*, std::shared_ptr<const WeightsCopy<double>>*);
template void direct_stack_step<float>(const StackSpec&, const StackParams<float>&, index_t,
                                       const float*, const float*, const float*, float*, float*);
template void direct_stack_step<double>(const StackSpec&, const StackParams<double>&, index_t,
                                        const double*, const double*, const double*, double*,
                                        double*);
template void direct_backward<float>(const StackSpec&, const LayerWeights<float>&, index_t,
                                     const float*, const float*, const float*, const float*,
                                     const float*, const float*, float*, float*, float*,
                                     const DirectGrads<float>&);
template void direct_backward<double>(const StackSpec&, const LayerWeights<double>&, index_t,
                                      const double*, const double*, const double*, const double*,
                                      const double*, const double*, double*, double*, double*,
                                      const DirectGrads<double>&);

}  // namespace rnnfast
