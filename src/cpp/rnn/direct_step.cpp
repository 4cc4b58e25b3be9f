#include "rnn/direct_step.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/table.h"
#include "rnn/cell.h"
#include "runtime/threads.h"

namespace rnnfast {
namespace {

// Multiply-adds a thread takes at least before a second one joins: the weights stream from L2
// (a 2 x 256 KiB LSTM layer at H = 128 in about 5 us on one core), and a team's start and end
// cost about a microsecond.
constexpr index_t kMinMacsPerThread = index_t{1} << 15;

// The pre-activations of units [lo, lo + n) of every batch row b: gx[b*ld + g*n + u] = W_ih x_b +
// b_ih and gh[...] = W_hh h_b + b_hh for each gate block g (gh the bias alone without h), where
// ld = G*n.
template <typename T>
void unit_products(const kernels::KernelTable<T>& k, const StackSpec& spec,
                   const LayerWeights<T>& w, index_t lo, index_t n, index_t batch, const T* x,
                   const T* h, T* gx, T* gh) {
  const index_t in = spec.input, hd = spec.hidden, gates = cell_info(spec.cell).gates;
  const index_t ld = gates * n;
  for (index_t g = 0; g < gates; ++g) {
    const index_t row = g * hd + lo;
    k.rows_dot(n, in, w.w_ih + row * in, in, x, in, batch, gx + g * n, ld);
    if (h) k.rows_dot(n, hd, w.w_hh + row * hd, hd, h, hd, batch, gh + g * n, ld);
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

}  // namespace

bool direct_step_runs(const StackSpec& spec) {
  return spec.layers == 1 && spec.directions == 1 && spec.proj == 0 && !spec.peepholes &&
         !cell_info(spec.cell).two_part;
}

template <typename T>
void direct_step(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                 const T* h0, const T* c0, T* h, T* c) {
  if (!direct_step_runs(spec)) {
    throw std::invalid_argument(
        std::string("direct step: runs one layer and one direction without projection or "
                    "peepholes, of a cell with one product a step; got ") +
        cell_info(spec.cell).name + " with " + std::to_string(spec.layers) + " layer(s), " +
        std::to_string(spec.directions) + " direction(s)");
  }
  if (batch < 0) throw std::invalid_argument("batch: expected >= 0, got " + std::to_string(batch));
  if (batch == 0) return;
  const kernels::KernelTable<T>& k = kernels::active_kernels<T>();
  const index_t in = spec.input, hd = spec.hidden, gates = cell_info(spec.cell).gates;
  const bool lstm = spec.cell == Cell::Lstm;
  const index_t unit_macs = gates * (in + hd) * batch;
  const index_t grain = std::max<index_t>(16, (kMinMacsPerThread + unit_macs - 1) / unit_macs);
  // Scratch for every unit's pre-activations, taken before the team starts (an exception
  // cannot leave a parallel region).
  std::vector<T> scratch(static_cast<size_t>(2 * gates * hd * batch));
  const CallTeam team(spec.macs(1, batch));
  // Each thread takes a range of units of every batch row, reading its rows of the weights once
  // (from its own L2 when called again).
  parallel_for(hd, grain, [&](index_t lo, index_t hi) {
    const index_t n = hi - lo, ld = gates * n;
    T* gx = scratch.data() + 2 * gates * lo * batch;
    T* gh = gx + ld * batch;
    unit_products(k, spec, w, lo, n, batch, x, h0, gx, gh);
    for (index_t b = 0; b < batch; ++b) {
      const index_t at = b * hd + lo;
      unit_update(k, spec.cell, n, gx + b * ld, gh + b * ld, h0 ? h0 + at : nullptr,
                  lstm && c0 ? c0 + at : nullptr, h + at, lstm ? c + at : nullptr);
    }
  });
}

template void direct_step<float>(const StackSpec&, const LayerWeights<float>&, index_t,
                                 const float*, const float*, const float*, float*, float*);
template void direct_step<double>(const StackSpec&, const LayerWeights<double>&, index_t,
                                  const double*, const double*, const double*, double*, double*);

}  // namespace rnnfast
