#include "layer.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/gemm.h"

namespace rnnfast {
namespace {

using kernels::gemm;
using kernels::gemm_on_this_thread;
using kernels::PackedB;
using kernels::Trans;

template <typename T>
std::vector<T> buffer(index_t n) {
  return std::vector<T>(static_cast<size_t>(std::max<index_t>(n, 0)), T(0));
}

// A large work array whose every element is written before it is read: not zeroed, since
// clearing tens of MB is a serial pass that costs as much as a good part of the products.
template <typename T>
std::unique_ptr<T[]> uninitialized(index_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(std::max<index_t>(n, 1))]);
}

// Biases added at each step with the recurrent product: b_ih + b_hh, except the n block of the
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

// Which of the rows [b0, b1) still run at step t: active[b - b0].
void mark_active(const int64_t* lengths, index_t b0, index_t b1, index_t t, uint8_t* active) {
  for (index_t b = b0; b < b1; ++b) active[b - b0] = !lengths || t < lengths[b];
}

// Index in hs/cs of the state step t starts from and of the one it makes.
inline index_t state_before(bool reverse, index_t t) {
  return reverse ? t + 1 : t;
}
inline index_t state_after(bool reverse, index_t t) {
  return reverse ? t : t + 1;
}

// ---- Sharing the recurrence among threads -------------------------------------------------
// One parallel region runs the whole time loop. With enough rows each thread owns whole
// micro-kernel panels of the batch and needs no barrier; otherwise each owns a slice of the
// hidden units (with their W_hh rows packed in its own cache) and the team meets at one barrier
// per step (two for the reset-before GRU). Either way every element is computed the same way,
// so the split never changes a result.

// Below this many multiply-adds per step and thread, the barrier and the shared h cost more
// than a second thread saves. Measured on a 2-core Zen 3 (B = 1, us a step, 1 vs 2 threads):
// RNN H=96 (9216 a step) 0.95 vs 1.02, H=128 (16384) 1.61 vs 1.44; LSTM H=64 (16384) 1.73 vs
// 2.12, H=96 (36864) 4.29 vs 2.92. Two threads from 18432 a step: one case (RNN H=128) keeps
// 10% on the table, none runs slower than it could.
constexpr index_t kMinStepWorkPerThread = 9216;

struct Split {
  int threads = 1;
  bool by_rows = true;  // threads own rows [b0, b1) (all units) or units [u0, u1) (all rows)
  index_t chunk = 0;    // rows or units a thread
  index_t extent = 0;   // the batch or the hidden size
};

struct Slice {
  index_t b0, b1, u0, u1;
};

index_t ceil_div(index_t a, index_t b) {
  return (a + b - 1) / b;
}

Split plan_split(index_t batch, index_t hidden, index_t gates, index_t mr) {
  const index_t work = batch * gates * hidden * hidden;
  const index_t wanted = std::min<index_t>(get_num_threads(), work / kMinStepWorkPerThread);
  Split s;
  if (wanted <= 1) {
    s.extent = s.chunk = batch;
    return s;
  }
  s.by_rows = batch >= wanted * mr;
  s.extent = s.by_rows ? batch : hidden;
  // Rows split evenly (rounding up to whole panels would unbalance small batches: 16 -> 12 + 4);
  // units in multiples of 8 so the elementwise loops stay vector-wide.
  const index_t align = s.by_rows ? 1 : 8;
  s.chunk = ceil_div(ceil_div(s.extent, wanted), align) * align;
  s.threads = static_cast<int>(ceil_div(s.extent, s.chunk));
  return s;
}

Slice slice_of(const Split& s, int thread, index_t batch, index_t hidden) {
  const index_t begin = std::min(s.extent, thread * s.chunk);
  const index_t end = std::min(s.extent, (thread + 1) * s.chunk);
  return s.by_rows ? Slice{begin, end, 0, hidden} : Slice{0, batch, begin, end};
}

// W_hh^T restricted to gate blocks [g0, g1) of units [u0, u1), as the right operand of
// h_prev W^T: columns ordered gate by gate, (g - g0)*(u1 - u0) + (u - u0).
template <typename T>
PackedB<T> pack_gate_rows(const T* w_hh, index_t hidden, index_t g0, index_t g1, index_t u0,
                          index_t u1) {
  const index_t units = u1 - u0, cols = (g1 - g0) * units;
  if (g1 - g0 == 1 || units == hidden)  // the rows are contiguous already
    return PackedB<T>(Trans::Yes, hidden, cols, w_hh + (g0 * hidden + u0) * hidden, hidden);
  std::vector<T> rows = buffer<T>(cols * hidden);
  for (index_t g = g0; g < g1; ++g)
    std::copy(w_hh + (g * hidden + u0) * hidden, w_hh + (g * hidden + u1) * hidden,
              rows.data() + (g - g0) * units * hidden);
  return PackedB<T>(Trans::Yes, hidden, cols, rows.data(), hidden);
}

// Packs `make(slice)` once when threads own rows (they share it), else once per thread.
template <typename T, typename Make>
std::vector<PackedB<T>> pack_per_slice(const Split& split, index_t batch, index_t hidden,
                                       Make make) {
  std::vector<PackedB<T>> packs;
  const int count = split.by_rows ? 1 : split.threads;
  packs.reserve(static_cast<size_t>(count));
  for (int t = 0; t < count; ++t) packs.push_back(make(slice_of(split, t, batch, hidden)));
  return packs;
}

}  // namespace

RecurrencePlan plan_recurrence(Cell cell, index_t batch, index_t hidden, index_t kernel_rows) {
  const Split s = plan_split(batch, hidden, gate_count(cell), kernel_rows);
  return {s.threads, s.by_rows};
}

template <typename T>
void layer_forward(const LayerForward<T>& a) {
  const FlushDenormals flush;
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, g = gate_count(a.cell);
  const index_t gh = g * hd, bh = batch * hd;
  const bool training = a.gates != nullptr, lstm = a.cell == Cell::Lstm;
  const bool reset_before = a.cell == Cell::GruResetBefore;
  if (steps == 0 || batch == 0) {  // no step to run: O(1) whatever T (or B) is
    std::copy(a.h0, a.h0 + bh, a.h_n);
    if (lstm) std::copy(a.c0, a.c0 + bh, a.c_n);
    if (training) std::copy(a.h0, a.h0 + bh, a.hs);
    if (training && lstm) std::copy(a.c0, a.c0 + bh, a.cs);
    return;
  }

  const std::vector<T> bias = folded_bias(a.cell, gh, hd, a.b_ih, a.b_hh);

  // Everything the recurrence needs is allocated here, before the parallel region.
  const auto& kt = kernels::active_kernels<T>();
  const Split split = plan_split(batch, hd, g, kt.mr);
  // The input projection x W_ih^T. Training keeps all of it in the tape, so it is one product
  // over every step before the recurrence. Inference computes it chunk by chunk inside the
  // region, each thread exactly the slice it will consume, and so keeps O(B*H) of it, not
  // O(T*B*H).
  if (training) {
    gemm(Trans::No, steps * batch, gh, a.input, a.x, a.input,
         PackedB<T>(Trans::Yes, a.input, gh, a.w_ih, a.input), false, a.gates, gh);
  }
  const index_t chunk =
      std::max<index_t>(1, std::min<index_t>(steps, 256 / std::max<index_t>(batch, 1)));
  const bool whole_rows = split.threads == 1 || !split.by_rows;  // a thread's rows = the batch
  // Threads that own rows keep their chunk rows-contiguous (x's rows gathered first), so that
  // each chunk is one product per thread.
  const index_t x_gather = whole_rows ? 0 : chunk * split.chunk * a.input;
  const index_t pre_per_thread = whole_rows ? 0 : chunk * split.chunk * gh;
  std::unique_ptr<T[]> pre_store;
  if (!training)
    pre_store = uninitialized<T>(whole_rows ? chunk * batch * gh
                                            : split.threads * (pre_per_thread + x_gather));
  // W_ih^T per gate block of each slice's units (whole when threads own rows).
  std::vector<std::vector<PackedB<T>>> w_in;
  for (int t = 0; t < (training ? 0 : split.by_rows ? 1 : split.threads); ++t) {
    const Slice sl = slice_of(split, t, batch, hd);
    std::vector<PackedB<T>> per_gate;
    if (split.by_rows) {
      per_gate.emplace_back(Trans::Yes, a.input, gh, a.w_ih, a.input);
    } else {
      for (index_t k = 0; k < g; ++k)
        per_gate.emplace_back(Trans::Yes, a.input, sl.u1 - sl.u0,
                              a.w_ih + (k * hd + sl.u0) * a.input, a.input);
    }
    w_in.push_back(std::move(per_gate));
  }
  const index_t g_first = reset_before ? 2 : g;  // gate blocks of the first recurrent product
  const auto w_first = pack_per_slice<T>(split, batch, hd, [&](const Slice& sl) {
    return pack_gate_rows(a.w_hh, hd, 0, g_first, sl.u0, sl.u1);
  });
  const auto w_n = pack_per_slice<T>(split, batch, hd, [&](const Slice& sl) {
    return pack_gate_rows(a.w_hh, hd, 2, 3, sl.u0, reset_before ? sl.u1 : sl.u0);
  });
  const index_t rows_cap = split.by_rows ? split.chunk : batch;
  const index_t units_cap = split.by_rows ? hd : split.chunk;
  const index_t hh_size = rows_cap * g * units_cap, pack_size = gemm_workspace_size(kt);
  std::vector<T> work = buffer<T>(split.threads * (hh_size + pack_size));
  std::vector<uint8_t> active(static_cast<size_t>(split.threads * batch));
  // Inference keeps two state buffers (and GRU's extra); training writes states to the tape.
  std::vector<T> h_buf = buffer<T>(training ? 0 : 2 * bh), c_buf = buffer<T>(training ? 0 : 2 * bh);
  std::vector<T> extra_buf = buffer<T>(training || !is_gru(a.cell) ? 0 : bh);
  T* h_states = training ? a.hs : h_buf.data();
  T* c_states = lstm ? (training ? a.cs : c_buf.data()) : nullptr;
  const index_t first = training ? state_before(a.reverse, a.reverse ? steps - 1 : 0) : 0;
  std::copy(a.h0, a.h0 + bh, h_states + first * bh);
  if (lstm) std::copy(a.c0, a.c0 + bh, c_states + first * bh);

  // Slice i is computed by thread i % team, whatever team OpenMP grants; a slice's work does
  // not depend on who runs it, so neither does any result.
  const int slices = split.threads;
  run_team(slices, [&](int tid, int team) {
    // Step s, up to the point where the reset-before GRU needs every unit's r*h (phase 1), and
    // the rest of it (phase 2).
    auto phase = [&](int part, int slice, index_t s) {
      const Slice sl = slice_of(split, slice, batch, hd);
      const index_t rows = sl.b1 - sl.b0, units = sl.u1 - sl.u0, hh_ld = g * units;
      T* hh = work.data() + slice * (hh_size + pack_size);
      T* pack = hh + hh_size;
      uint8_t* act = active.data() + slice * batch;
      const PackedB<T>& wf = w_first[split.by_rows ? 0 : slice];
      const PackedB<T>& wn = w_n[split.by_rows ? 0 : slice];
      const std::vector<PackedB<T>>* wi = training ? nullptr : &w_in[split.by_rows ? 0 : slice];
      T* my_pre = whole_rows ? nullptr : pre_store.get() + slice * (pre_per_thread + x_gather);
      T* my_x = my_pre + pre_per_thread;
      // The first timestep (in x's order) of the chunk that holds step s.
      const index_t c0 = s / chunk * chunk, n_steps = std::min(chunk, steps - c0);
      const index_t t_lo = a.reverse ? steps - c0 - n_steps : c0;
      // This slice's first row of step t's projection: in the tape, the shared chunk buffer, or
      // its own rows-contiguous chunk buffer.
      auto pre_of = [&](index_t t) {
        if (training) return a.gates + (t * batch + sl.b0) * gh;
        if (whole_rows) return pre_store.get() + ((t - t_lo) * batch + sl.b0) * gh;
        return my_pre + (t - t_lo) * rows * gh;
      };
      const index_t t = a.reverse ? steps - 1 - s : s;
      const index_t before = training ? state_before(a.reverse, t) : s % 2;
      const index_t after = training ? state_after(a.reverse, t) : (s + 1) % 2;
      T* extra = training ? a.extra + (a.extra ? t * bh : 0) : extra_buf.data();
      StepForward<T> st{};
      st.batch = rows;
      st.hidden = hd;
      st.u0 = sl.u0;
      st.u1 = sl.u1;
      st.gates = pre_of(t);
      st.bias = a.b_ih ? bias.data() : nullptr;
      st.hh = hh;
      st.hh_ld = hh_ld;
      st.hh_gate = units;
      st.h_prev = h_states + before * bh + sl.b0 * hd;
      st.h = h_states + after * bh + sl.b0 * hd;
      if (lstm) {
        st.c_prev = c_states + before * bh + sl.b0 * hd;
        st.c = c_states + after * bh + sl.b0 * hd;
      }
      if (is_gru(a.cell)) st.extra = extra + sl.b0 * hd;
      st.active = act;

      if (part == 1) {
        if (!training && s == c0) {  // project this slice of the next chunk
          if (whole_rows) {  // the chunk's rows of x are contiguous: one product per gate block
            for (index_t k = 0; k < static_cast<index_t>(wi->size()); ++k)
              gemm_on_this_thread(Trans::No, n_steps * batch, (*wi)[k].cols(), a.input,
                                  a.x + t_lo * batch * a.input, a.input, (*wi)[k], false,
                                  pre_of(t_lo) + k * hd + sl.u0, gh, pack);
          } else {  // gather this slice's rows of the chunk, then one product
            for (index_t i = 0; i < n_steps; ++i)
              std::copy(a.x + ((t_lo + i) * batch + sl.b0) * a.input,
                        a.x + ((t_lo + i) * batch + sl.b1) * a.input, my_x + i * rows * a.input);
            gemm_on_this_thread(Trans::No, n_steps * rows, gh, a.input, my_x, a.input, (*wi)[0],
                                false, my_pre, gh, pack);
          }
        }
        mark_active(a.lengths, sl.b0, sl.b1, t, act);
        if (a.cell == Cell::Gru) {  // the n block starts from b_hn: r * (W_hn h + b_hn)
          for (index_t r = 0; r < rows; ++r)
            for (index_t j = 0; j < g * units; ++j)
              hh[r * hh_ld + j] =
                  j >= 2 * units && a.b_hh ? a.b_hh[2 * hd + sl.u0 + j - 2 * units] : T(0);
        }
        gemm_on_this_thread(Trans::No, rows, g_first * units, hd, st.h_prev, hd, wf,
                            a.cell == Cell::Gru, hh, hh_ld, pack);
        if (reset_before) {
          gru_reset_before_gates(st);
          return;
        }
        forward_step(a.cell, st);
      } else {
        gemm_on_this_thread(Trans::No, rows, units, hd, static_cast<const T*>(st.extra), hd, wn,
                            false, hh + 2 * units, hh_ld, pack);
        gru_reset_before_update(st);
      }
      for (index_t r = 0; r < rows; ++r) {
        T* yr = a.y + (t * batch + sl.b0 + r) * a.ldy + sl.u0;
        const T* hr = st.h + r * hd + sl.u0;
        if (act[r]) {
          std::copy(hr, hr + units, yr);
        } else {
          std::fill(yr, yr + units, T(0));
        }
      }
    };
    // Threads that own units meet after every phase that others read from; threads that own
    // rows never read another's.
    const bool meet = !split.by_rows && team > 1;
    for (index_t s = 0; s < steps; ++s) {
      for (int slice = tid; slice < slices; slice += team) phase(1, slice, s);
      if (reset_before) {
        if (meet) {
#pragma omp barrier
        }
        for (int slice = tid; slice < slices; slice += team) phase(2, slice, s);
      }
      if (meet) {
#pragma omp barrier
      }
    }
  });
  const index_t last = training ? (a.reverse ? 0 : steps) : steps % 2;
  std::copy(h_states + last * bh, h_states + (last + 1) * bh, a.h_n);
  if (lstm) std::copy(c_states + last * bh, c_states + (last + 1) * bh, a.c_n);
}

template <typename T>
void layer_backward(const LayerBackward<T>& a) {
  const FlushDenormals flush;
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, g = gate_count(a.cell);
  const index_t gh = g * hd, bh = batch * hd, rows_all = steps * batch;
  const bool lstm = a.cell == Cell::Lstm, reset_before = a.cell == Cell::GruResetBefore;
  if (steps == 0 || batch == 0) {  // nothing ran: the gradient passes to the initial state
    if (a.dh_n)
      std::copy(a.dh_n, a.dh_n + bh, a.dh0);
    else
      std::fill(a.dh0, a.dh0 + bh, T(0));
    if (lstm && a.dc_n)
      std::copy(a.dc_n, a.dc_n + bh, a.dc0);
    else if (lstm)
      std::fill(a.dc0, a.dc0 + bh, T(0));
    return;
  }

  // dL/d(pre-activations) of every step; the recurrent side differs only for linear-before-reset.
  // Every element is written by its step (zeros for ended sequences) before any product reads it.
  const std::unique_ptr<T[]> dgx_store = uninitialized<T>(rows_all * gh);
  const std::unique_ptr<T[]> dgh_store = uninitialized<T>(a.cell == Cell::Gru ? rows_all * gh : 0);
  T* dgx = dgx_store.get();
  T* dgh = a.cell == Cell::Gru ? dgh_store.get() : dgx;
  std::vector<T> dh_bufs = buffer<T>(2 * bh), dc = buffer<T>(lstm ? bh : 0);
  std::vector<T> d_rh = buffer<T>(reset_before ? bh : 0);
  if (a.dh_n) std::copy(a.dh_n, a.dh_n + bh, dh_bufs.begin());
  if (lstm && a.dc_n) std::copy(a.dc_n, a.dc_n + bh, dc.begin());

  // W_hh as the right operand of dh_prev = dG W_hh, restricted to each slice's units.
  const auto& kt = kernels::active_kernels<T>();
  const Split split = plan_split(batch, hd, g, kt.mr);
  const index_t g_first = reset_before ? 2 : g;
  const auto w_first = pack_per_slice<T>(split, batch, hd, [&](const Slice& sl) {
    return PackedB<T>(Trans::No, g_first * hd, sl.u1 - sl.u0, a.w_hh + sl.u0, hd);
  });
  const auto w_n = pack_per_slice<T>(split, batch, hd, [&](const Slice& sl) {
    return PackedB<T>(Trans::No, reset_before ? hd : 0, sl.u1 - sl.u0, a.w_hh + 2 * hd * hd + sl.u0,
                      hd);
  });
  const index_t units_cap = split.by_rows ? hd : split.chunk;
  const index_t per_thread = units_cap + gemm_workspace_size(kt);
  std::vector<T> work = buffer<T>(split.threads * per_thread);
  std::vector<uint8_t> active(static_cast<size_t>(split.threads * batch));

  const int slices = split.threads;
  run_team(slices, [&](int tid, int team) {
    // Step s in three phases: the gate gradients of the slice's units (1); for the reset-before
    // GRU, the reset gate's, which needs every unit's n gradient (2); dh_prev += dG W_hh, which
    // reads every unit's gate gradients (3).
    auto phase = [&](int part, int slice, index_t s) {
      const Slice sl = slice_of(split, slice, batch, hd);
      const index_t rows = sl.b1 - sl.b0, units = sl.u1 - sl.u0;
      T* scratch = work.data() + slice * per_thread;
      T* pack = scratch + units_cap;
      uint8_t* act = active.data() + slice * batch;
      const PackedB<T>& wf = w_first[split.by_rows ? 0 : slice];
      const PackedB<T>& wn = w_n[split.by_rows ? 0 : slice];
      T* dh = dh_bufs.data() + ((steps - 1 - s) % 2) * bh;  // the two buffers swap every step
      T* dh_prev = dh_bufs.data() + ((steps - s) % 2) * bh;
      const index_t t = a.reverse ? steps - 1 - s : s;
      StepBackward<T> st{};
      st.batch = rows;
      st.hidden = hd;
      st.u0 = sl.u0;
      st.u1 = sl.u1;
      st.gates = a.gates + (t * batch + sl.b0) * gh;
      st.h_prev = a.hs + state_before(a.reverse, t) * bh + sl.b0 * hd;
      st.h = a.hs + state_after(a.reverse, t) * bh + sl.b0 * hd;
      if (lstm) {
        st.c_prev = a.cs + state_before(a.reverse, t) * bh + sl.b0 * hd;
        st.c = a.cs + state_after(a.reverse, t) * bh + sl.b0 * hd;
        st.dc = dc.data() + sl.b0 * hd;
      }
      if (a.extra) st.extra = a.extra + t * bh + sl.b0 * hd;
      st.dh = dh + sl.b0 * hd;
      st.dgx = dgx + (t * batch + sl.b0) * gh;
      st.dgh = dgh + (t * batch + sl.b0) * gh;
      st.dh_prev = dh_prev + sl.b0 * hd;
      st.scratch = scratch;
      st.active = act;
      if (part == 1) {
        mark_active(a.lengths, sl.b0, sl.b1, t, act);
        if (a.dy) {  // y is a constant zero past a sequence's end: its gradient is dropped there
          for (index_t r = 0; r < rows; ++r) {
            if (!act[r]) continue;
            const T* dyr = a.dy + (t * batch + sl.b0 + r) * a.ldy + sl.u0;
            T* dhr = dh + (sl.b0 + r) * hd + sl.u0;
            for (index_t j = 0; j < units; ++j) dhr[j] += dyr[j];
          }
        }
        backward_step(a.cell, st);
      } else if (part == 2) {  // dL/d(r*h) = dan W_hn
        gemm_on_this_thread(Trans::No, rows, units, hd, static_cast<const T*>(st.dgx + 2 * hd), gh,
                            wn, false, d_rh.data() + sl.b0 * hd + sl.u0, hd, pack);
        gru_reset_before_backward_reset(st, static_cast<const T*>(d_rh.data() + sl.b0 * hd));
      } else {
        gemm_on_this_thread(Trans::No, rows, units, g_first * hd, static_cast<const T*>(st.dgh), gh,
                            wf, true, st.dh_prev + sl.u0, hd, pack);
      }
    };
    const bool meet = !split.by_rows && team > 1;
    for (index_t s = steps - 1; s >= 0; --s) {
      for (int slice = tid; slice < slices; slice += team) phase(1, slice, s);
      if (reset_before) {
        if (meet) {
#pragma omp barrier
        }
        for (int slice = tid; slice < slices; slice += team) phase(2, slice, s);
      }
      if (meet) {
#pragma omp barrier
      }
      for (int slice = tid; slice < slices; slice += team) phase(3, slice, s);
    }
  });
  const T* dh_last = dh_bufs.data() + (steps % 2) * bh;
  std::copy(dh_last, dh_last + bh, a.dh0);
  if (lstm) std::copy(dc.begin(), dc.end(), a.dc0);

  // Weight gradients and dx: one product each over all timesteps.
  const T* dgx_c = dgx;
  const T* dgh_c = dgh;
  if (a.dx) {  // null when the caller needs no input gradient (one-hot characters, say)
    gemm(Trans::No, rows_all, a.input, gh, dgx_c, gh,
         PackedB<T>(Trans::No, gh, a.input, a.w_ih, a.input), a.accumulate_dx, a.dx, a.input);
  }
  // Padding rows of x and of the carried states are packed as zeros: their gate gradients are
  // zero, but 0 * NaN is not.
  const kernels::PaddingRows padding{a.lengths, batch};
  gemm(Trans::Yes, gh, a.input, rows_all, dgx_c, gh,
       PackedB<T>(Trans::No, rows_all, a.input, a.x, a.input, padding), true, a.dw_ih, a.input);
  const T* h_prev_all = a.hs + (a.reverse ? bh : 0);  // the state each step started from
  gemm(Trans::Yes, g_first * hd, hd, rows_all, dgh_c, gh,
       PackedB<T>(Trans::No, rows_all, hd, h_prev_all, hd, padding), true, a.dw_hh, hd);
  if (reset_before) {  // W_hn multiplies r * h_prev, kept in extra
    gemm(Trans::Yes, hd, hd, rows_all, dgh_c + 2 * hd, gh,
         PackedB<T>(Trans::No, rows_all, hd, a.extra, hd, padding), true, a.dw_hh + 2 * hd * hd,
         hd);
  }
  if (a.db_ih) kernels::add_column_sums(rows_all, gh, dgx_c, gh, a.db_ih);
  if (a.db_hh) kernels::add_column_sums(rows_all, gh, dgh_c, gh, a.db_hh);
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward<float>(const LayerBackward<float>&);
template void layer_backward<double>(const LayerBackward<double>&);

}  // namespace rnnfast
