// A layer direction's backward: the time loop of fused backward steps (and dx), then every
// weight gradient (rnn/layer.h for the contract).
#include "rnn/cell_ops.h"
#include "rnn/layer.h"
#include "rnn/layer_team.h"

namespace rnnfast {
namespace {

using namespace layer_detail;  // the loop machinery both directions share (rnn/layer_team.h)

// dW (n x input) += the weight gradient dG^T x when x's rows are one-hot: column ids[r] of dW
// gains row r of dG (n values at g + r*ldg), padding rows skipped. Each element is summed over
// its rows in ascending order into zero, then added (columns of ids that no row has are left
// alone), whoever computes it and whichever way below: threads own ranges of dW's rows.
//  - Small inputs (vocabularies): dG is read once, in order, into one sum per (id, column) of a
//    block of columns that fits in L2.
//  - Large inputs: the rows of each id are listed first (a counting sort), and each id's rows
//    summed in turn (rows read out of order, but no id x column sums).
// With col_sums (n values), also col_sums[j] = the sum of column j over every row, ascending
// (what add_column_sums gives: the bias gradients), from the same pass over dG.
// `space` has room for one_hot_space(rows, input) index_t values.
constexpr index_t kOneHotSums = 1 << 16;  // sums a thread keeps (256 KB of float)
constexpr index_t kOneHotMinBlock = 16;   // columns a block needs to be worth it

inline bool one_hot_in_order(index_t input) {
  return input * kOneHotMinBlock <= kOneHotSums;
}
template <typename T>
index_t one_hot_space(index_t rows, index_t input, int threads) {
  if (!one_hot_in_order(input))
    return rows + input + 1;  // the rows in id order, where each id's rows start
  return input + static_cast<index_t>(threads) * kOneHotSums * static_cast<index_t>(sizeof(T)) /
                     static_cast<index_t>(sizeof(index_t));  // rows of each id; the sums
}

template <typename T>
void add_one_hot_gradient(index_t rows, index_t n, const T* g, index_t ldg, const int64_t* ids,
                          index_t input, const kernels::PaddingRows& padding, T* dw, index_t* space,
                          int threads, T* col_sums) {
  if (col_sums) std::fill(col_sums, col_sums + n, T(0));
  if (one_hot_in_order(input)) {
    index_t* count = space;
    std::fill(count, count + input, index_t{0});
    for (index_t r = 0; r < rows; ++r)
      if (!padding.padding(r)) ++count[ids[r]];
    T* sums_space = reinterpret_cast<T*>(space + input);
    const index_t block = std::max(kOneHotMinBlock, kOneHotSums / input / 16 * 16);
    run_team(threads, [&](int id, int team) {
      const Share cols = share_of(n, id, team);
      T* sums = sums_space + static_cast<index_t>(id) * kOneHotSums;
      for (index_t j0 = cols.first; j0 < cols.last; j0 += block) {
        const index_t len = std::min(block, cols.last - j0);
        std::fill(sums, sums + input * len, T(0));
        T* all = col_sums ? col_sums + j0 : nullptr;
        for (index_t r = 0; r < rows; ++r) {
          const T* row = g + r * ldg + j0;
          if (all)
            for (index_t j = 0; j < len; ++j) all[j] += row[j];
          if (padding.padding(r)) continue;
          T* acc = sums + ids[r] * len;
          for (index_t j = 0; j < len; ++j) acc[j] += row[j];
        }
        for (index_t j = 0; j < len; ++j)
          for (index_t v = 0; v < input; ++v)
            if (count[v]) dw[(j0 + j) * input + v] += sums[v * len + j];
      }
    });
    return;
  }
  if (col_sums) kernels::add_column_sums(rows, n, g, ldg, col_sums);
  // The rows of each id, ascending (a counting sort): order[start[v] .. start[v + 1]).
  index_t* order = space;
  index_t* start = space + rows;
  std::fill(start, start + input + 1, index_t{0});
  for (index_t r = 0; r < rows; ++r)
    if (!padding.padding(r)) ++start[ids[r] + 1];
  for (index_t v = 0; v < input; ++v) start[v + 1] += start[v];
  for (index_t r = 0; r < rows; ++r)  // start[v] moves to the end of v's rows...
    if (!padding.padding(r)) order[start[ids[r]]++] = r;
  for (index_t v = input; v > 0; --v) start[v] = start[v - 1];  // ...and back
  start[0] = 0;
  constexpr index_t kBlock = 256;
  run_team(threads, [&](int id, int team) {
    const Share cols = share_of(n, id, team);
    T acc[kBlock];
    for (index_t j0 = cols.first; j0 < cols.last; j0 += kBlock) {
      const index_t len = std::min(kBlock, cols.last - j0);
      for (index_t v = 0; v < input; ++v) {
        if (start[v] == start[v + 1]) continue;
        std::fill(acc, acc + len, T(0));
        for (index_t i = start[v]; i < start[v + 1]; ++i) {
          const T* row = g + order[i] * ldg + j0;
          for (index_t j = 0; j < len; ++j) acc[j] += row[j];
        }
        for (index_t j = 0; j < len; ++j) dw[(j0 + j) * input + v] += acc[j];
      }
    }
  });
}

}  // namespace

// The peepholes' gradients: dp_i += sum dA_i c_{t-1}, dp_f += sum dA_f c_{t-1}, dp_o += sum
// dA_o c_t over the real steps of every sequence (a padding row's c may be anything, even NaN),
// summed in the order (t, b) whichever thread owns the units.
template <typename T>
void add_peephole_gradient(const LayerBackward<T>& a, const T* dg, index_t ld, T* dw_p) {
  const index_t hd = a.hidden, batch = a.batch, bh = batch * hd;
  parallel_for(hd, 64, [&](index_t u0, index_t u1) {
    const index_t n = u1 - u0;
    std::vector<T> sum(static_cast<size_t>(3 * n), T(0));
    for (index_t t = 0; t < a.steps; ++t) {
      const T* c_prev = a.cs + state_before(a.reverse, t) * bh;
      const T* c = a.cs + state_after(a.reverse, t) * bh;
      for (index_t b = 0; b < batch; ++b) {
        if (a.lengths && t >= a.lengths[b]) continue;
        const T* g = dg + (t * batch + b) * ld;
        const T* cp = c_prev + b * hd;
        const T* cn = c + b * hd;
        for (index_t u = u0; u < u1; ++u) {
          sum[u - u0] += g[u] * cp[u];
          sum[n + u - u0] += g[hd + u] * cp[u];
          sum[2 * n + u - u0] += g[3 * hd + u] * cn[u];
        }
      }
    }
    for (index_t k = 0; k < 3; ++k)
      for (index_t u = u0; u < u1; ++u) dw_p[k * hd + u] += sum[k * n + u - u0];
  });
}

template <typename T>
void layer_backward_steps(const LayerBackward<T>& a) {
  const FlushDenormals flush;
  const CellInfo& info = cell_info(a.cell);
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, in = a.input;
  const index_t sd = a.proj ? a.proj : hd;  // the state's size, S
  const index_t gh = info.gates * hd, bh = batch * hd, bs = batch * sd, rows_all = steps * batch;
  const index_t ld = gates_stride(a.cell, hd, static_cast<index_t>(sizeof(T)));
  const bool lstm = info.cell_state, two_part = info.two_part, lbr = info.linear_before_reset;
  const bool proj = a.proj > 0;
  auto initial = copy_or_zero<T>;  // a final state's gradient, or zeros
  if (steps == 0 || batch == 0) {  // nothing ran: the gradient passes to the initial state
    initial(a.dh_n, a.dh0, bs);
    if (lstm) initial(a.dc_n, a.dc0, bh);
    return;
  }
  const auto& kt = kernels::active_kernels<T>();
  const CellOps<T> ops = cell_ops(kt, a.cell);
  const BackwardPacks<T>& pk = *a.packs;
  Team team(a.cell, steps, batch, in, hd, sd, kt.width, sizeof(T), pk.precision);
  const index_t active_size = Workspace<T>::bytes_as_values(team.plan.threads * batch);
  // A team of two owning units runs each step in parts, as the forward (rnn/layer_forward.cpp):
  // the product dG_{t+1} W_hh sums the block of its own units' gradients (a piece of each gate's
  // H) first, meets, then sums the rest: one batch row only, as the forward, and cells whose
  // step has a second product keep one block. (Training steps, forward and backward, 2-core
  // Sapphire Rapids, B = 1: LSTM(128) 7.3 -> 6.7 us, GRU(128) 6.0 -> 5.4.)
  const index_t split = batch == 1 && !proj && !two_part ? depth_split(team.groups, kt.width) : 0;
  const bool in_parts = split > 0 && !team.plan.by_rows && team.plan.threads == 2 &&
                        pk.precision == Precision::Native;
  // A member's room for one block's sums (kernels::Product::partial), any groups it may run.
  const index_t partial_size = split > 0 ? batch * team.groups * kt.width : 0;
  Workspace<T> ws(a.pool, {bs, lstm ? bh : 0, active_size, team.plan.threads * partial_size});
  T* direct = ws.take(bs);
  T* dc = ws.take(lstm ? bh : 0);
  T* dhs = a.dh_all;  // dL/dh of every step, for W_hr's gradient
  uint8_t* active = ws.take_bytes(team.plan.threads * batch);
  T* partials = ws.take(team.plan.threads * partial_size);
  team.set_poll_interval(batch * gh * sd);
  team.interrupt = a.interrupt;
  initial(a.dh_n, direct, bs);
  if (lstm) initial(a.dc_n, dc, bh);
  const index_t depth = two_part ? 2 * hd : gh;  // of the product into dh_prev
  // The tape arrays the cell's kernels read, or null: decided here, so that the loop below only
  // asks whether an array exists (LSTM's c; the linear-before-reset GRU's W_hn h + b_hn).
  const T* const cs_tape = lstm ? a.cs : nullptr;
  T* const hn_tape = lbr ? a.extra : nullptr;

  run_layer_team(team, [&](Member& m) {
    m.by_flags = in_parts && m.meet;
    uint8_t* act = active + m.id * batch;
    index_t t_next = -1;  // the step processed before (later in the sequence's own order)
    for (index_t s = steps - 1; s >= 0; --s) {
      const index_t i = steps - 1 - s;  // the loop's iteration
      if (team.stopping(i)) return;
      const index_t t = a.reverse ? steps - 1 - s : s;
      mark_active(a.lengths, m.b0, m.b1, t, act);
      kernels::BackwardStep<T> st;
      st.p.rows = m.b1 - m.b0;
      st.p.depth = depth;
      st.p.a = t_next >= 0 ? a.gates + (t_next * batch + m.b0) * ld : nullptr;
      st.p.lda = ld;
      pk.rec.bind(st.p);
      st.p.g0 = proj ? m.s0 : m.g0;
      st.p.g1 = proj ? m.s1 : m.g1;
      st.p.hidden = sd;
      st.product = t_next >= 0;
      st.dy = a.dy ? a.dy + (t * batch + m.b0) * a.ldy : nullptr;
      st.ldy = a.ldy;
      st.direct = direct + m.b0 * sd;
      st.active = act;
      st.dh_out = a.dh_states ? a.dh_states + (t * batch + m.b0) * sd : nullptr;
      st.dc_out = a.dc_states ? a.dc_states + (t * batch + m.b0) * hd : nullptr;
      if (proj) {  // dh (S units) first, written out; then dm = dh W_hr and the gates
        st.dg = dhs + (t * batch + m.b0) * sd;
        st.ld_gates = sd;
        kt.lstm_proj_dh(st);
        if (!m.sync(team)) return;
        st.p.depth = sd;
        st.p.a = st.dg;
        st.p.lda = sd;
        pk.proj.bind(st.p);
        st.p.g0 = m.g0;
        st.p.g1 = m.g1;
        st.product = true;
        st.projected = true;
        st.dy = nullptr;
        st.direct = nullptr;
      }
      st.p.hidden = hd;
      st.gates = a.gates + (t * batch + m.b0) * ld;
      st.ld_gates = ld;
      st.dg = a.gates + (t * batch + m.b0) * ld;  // in place: step t's activations are done
      st.h_prev = a.hs + state_before(a.reverse, t) * bs + m.b0 * sd;
      st.h = a.hs + state_after(a.reverse, t) * bs + m.b0 * sd;
      if (cs_tape) {
        st.c_prev = cs_tape + state_before(a.reverse, t) * bh + m.b0 * hd;
        st.c = cs_tape + state_after(a.reverse, t) * bh + m.b0 * hd;
        st.dc = dc + m.b0 * hd;
      }
      if (hn_tape) {
        st.extra = hn_tape + t * bh + m.b0 * hd;
        st.dg_n = hn_tape + t * bh + m.b0 * hd;  // in place, as dg
      }
      st.relu = ops.relu;
      st.peep = pk.peep.empty() ? nullptr : pk.peep.data();
      st.p.split = split;  // (every team and one thread: the bits never depend on the team)
      st.p.period = hd;
      st.p.partial = partials + m.id * partial_size;
      st.p.ld_partial = (m.g1 - m.g0) * kt.width;
      const bool parts = in_parts && m.meet;  // (a member gone solo runs whole steps)
      if (parts && st.product) {
        const index_t lo = m.g0 == 0 ? split : 0, hi = m.g0 == 0 ? hd : split;
        const auto fetch_rest = [&] {  // the teammate's gradients of step t_next, all at once
          for (index_t r = 0; r < st.p.rows; ++r)
            for (index_t k = 0; k < info.gates; ++k)
              prefetch_values(st.p.a + r * st.p.lda + k * hd, lo, hi);
        };
        if (!step_in_parts(team, m, i, st, ops.backward, fetch_rest)) return;
        t_next = t;
        continue;
      }
      ops.backward(st);
      if (ops.backward_part2) {  // dL/d(r*h) = dn W_hn: every unit's dn first
        if (!m.sync(team)) return;
        kernels::BackwardStep<T> st2 = st;
        st2.p.depth = hd;
        st2.p.a = st.dg + 2 * hd;
        pk.rec_n.bind(st2.p);
        st2.p.g0 = m.g0;
        st2.p.g1 = m.g1;
        ops.backward_part2(st2);
      }
      if (parts) {  // the first step (no product): published, met in the next step
        m.publish(team, i + 1);
      } else if (!m.sync(team)) {  // the next product reads every unit's gradients
        return;
      }
      t_next = t;
    }
    if (in_parts && m.meet && !m.meet_after(team, steps)) return;
    kernels::BackwardStep<T> fin;
    fin.p.rows = m.b1 - m.b0;
    fin.p.depth = depth;
    fin.p.a = a.gates + (t_next * batch + m.b0) * ld;
    fin.p.lda = ld;
    pk.rec.bind(fin.p);
    fin.p.g0 = proj ? m.s0 : m.g0;
    fin.p.g1 = proj ? m.s1 : m.g1;
    fin.p.hidden = sd;
    fin.direct = direct + m.b0 * sd;
    fin.dh0 = a.dh0 + m.b0 * sd;
    kt.final_dh(fin);
  });
  if (interrupt_requested(a.interrupt)) return;
  if (lstm) std::copy(dc, dc + bh, a.dc0);

  // dx: one product over all timesteps. The tape's gates now hold the pre-activation gradients,
  // recurrent side; the linear-before-reset GRU's n block differs on the input side, which lives
  // in extra.
  const T* dg = a.gates;
  if (a.dx) {
    if (lbr) {
      gemm_rows(a.interrupt, rows_all, in, 2 * hd, dg, ld, pk.w_ih[0], a.accumulate_dx, a.dx, in);
      gemm_rows(a.interrupt, rows_all, in, hd, static_cast<const T*>(a.extra), hd, pk.w_ih[1], true,
                a.dx, in);
    } else {
      gemm_rows(a.interrupt, rows_all, in, gh, dg, ld, pk.w_ih[0], a.accumulate_dx, a.dx, in);
    }
  }
}

// Zeros in the weight gradients that are added to rather than written (assign_grads), or in all
// of them when there is nothing to add.
template <typename T>
void zero_weight_grads(const LayerBackward<T>& a, bool all) {
  const CellInfo& info = cell_info(a.cell);
  const index_t hd = a.hidden, gh = info.gates * hd, sd = a.proj ? a.proj : hd;
  auto zero = [](T* p, index_t n) {
    if (p) std::fill(p, p + n, T(0));
  };
  if (all || a.ids) zero(a.dw_ih, gh * a.input);
  if (all) zero(a.dw_hh, gh * sd);
  if (all && a.proj) zero(a.dw_hr, sd * hd);
  zero(a.db_ih, gh);
  zero(a.db_hh, gh);
  zero(a.dw_p, 3 * hd);
}

// The weight gradients, one product each over all timesteps, from the gate gradients the steps
// left in the tape.
template <typename T>
void layer_backward_weights(const LayerBackward<T>& a) {
  const CellInfo& info = cell_info(a.cell);
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, in = a.input;
  if (steps == 0 || batch == 0) {
    if (a.assign_grads) zero_weight_grads(a, true);
    return;
  }
  const FlushDenormals flush;
  const index_t sd = a.proj ? a.proj : hd;
  const index_t gh = info.gates * hd, bs = batch * sd, rows_all = steps * batch;
  const index_t ld = gates_stride(a.cell, hd, static_cast<index_t>(sizeof(T)));
  const bool two_part = info.two_part, lbr = info.linear_before_reset, proj = a.proj > 0;
  const T* dg = a.gates;
  const T* dhs = a.dh_all;
  // Padding rows of x and of the carried states are packed as zeros: their gate gradients are
  // zero, but 0 * NaN is not.
  const kernels::PaddingRows padding{a.lengths, batch};
  // In bf16 the weight gradients are bf16 products too, summed in float32 (kernels/bf16.h).
  const Precision pr = a.packs->precision;
  const PackedB<T> h_rows(Trans::No, rows_all, sd, a.hs + (a.reverse ? bs : 0), sd, padding, pr);
  // A team for the one-hot gradient when its n x rows additions are worth one.
  const int one_hot_team =
      static_cast<int>(std::clamp<index_t>(gh * rows_all / (1 << 17), 1, get_num_threads()));
  const index_t one_hot_size = a.ids ? one_hot_space<T>(rows_all, in, one_hot_team) : 0;
  Workspace<index_t> one_hot_work(a.pool, {one_hot_size});
  index_t* space = one_hot_work.take(one_hot_size);
  // The column sums of dg: db_hh's gradient, and db_ih's (but for the linear-before-reset GRU's
  // n block, whose input side is extra). Taken from the one-hot pass when it reads dg whole.
  Workspace<T> sums_space(a.pool, {a.db_ih ? gh : 0});
  T* sums = sums_space.take(a.db_ih ? gh : 0);
  const bool sums_from_one_hot = a.ids && a.db_ih && !lbr;
  // Every operand is packed before the first addition: a failure (memory) adds nothing.
  std::optional<PackedB<T>> x_rows, rh_rows, m_rows;
  if (!a.ids) x_rows.emplace(Trans::No, rows_all, in, a.x, in, padding, pr);
  if (two_part) rh_rows.emplace(Trans::No, rows_all, hd, a.extra, hd, padding, pr);
  if (proj) m_rows.emplace(Trans::No, rows_all, hd, a.extra, hd, padding, pr);
  std::unique_lock<std::mutex> lock;
  if (a.grad_lock) lock = std::unique_lock<std::mutex>(*a.grad_lock);
  // Written: the products' first K block stores instead of adding; the rest add to zeros.
  const bool add = !a.assign_grads;
  if (!add) zero_weight_grads(a, false);
  if (a.ids) {  // one-hot x: dW_ih's columns gather their rows of dG, no product
    if (lbr) {
      add_one_hot_gradient(rows_all, 2 * hd, dg, ld, a.ids, in, padding, a.dw_ih, space,
                           one_hot_team, static_cast<T*>(nullptr));
      add_one_hot_gradient(rows_all, hd, static_cast<const T*>(a.extra), hd, a.ids, in, padding,
                           a.dw_ih + 2 * hd * in, space, one_hot_team, static_cast<T*>(nullptr));
    } else {
      add_one_hot_gradient(rows_all, gh, dg, ld, a.ids, in, padding, a.dw_ih, space, one_hot_team,
                           sums_from_one_hot ? sums : nullptr);
    }
  } else {
    if (lbr) {
      gemm(Trans::Yes, 2 * hd, in, rows_all, dg, ld, *x_rows, add, a.dw_ih, in);
      gemm(Trans::Yes, hd, in, rows_all, static_cast<const T*>(a.extra), hd, *x_rows, add,
           a.dw_ih + 2 * hd * in, in);
    } else {
      gemm(Trans::Yes, gh, in, rows_all, dg, ld, *x_rows, add, a.dw_ih, in);
    }
  }
  if (two_part) {  // W_hn multiplies r * h_prev, kept in extra
    gemm(Trans::Yes, 2 * hd, hd, rows_all, dg, ld, h_rows, add, a.dw_hh, hd);
    gemm(Trans::Yes, hd, hd, rows_all, dg + 2 * hd, ld, *rh_rows, add, a.dw_hh + 2 * hd * hd, hd);
  } else {
    gemm(Trans::Yes, gh, sd, rows_all, dg, ld, h_rows, add, a.dw_hh, sd);
  }
  if (proj) {  // dW_hr += dH^T m (m of an ended row is zero, and its dh too)
    gemm(Trans::Yes, sd, hd, rows_all, dhs, sd, *m_rows, add, a.dw_hr, hd);
  }
  if (a.db_ih) {  // the sums of dg's columns go to both biases: computed once
    if (!sums_from_one_hot) {
      std::fill(sums, sums + gh, T(0));
      kernels::add_column_sums(rows_all, gh, dg, ld, sums);
    }
    for (index_t j = 0; j < gh; ++j) a.db_hh[j] += sums[j];
    if (lbr) {  // the n block's input side differs (extra)
      std::fill(sums + 2 * hd, sums + gh, T(0));
      kernels::add_column_sums(rows_all, hd, static_cast<const T*>(a.extra), hd, sums + 2 * hd);
    }
    for (index_t j = 0; j < gh; ++j) a.db_ih[j] += sums[j];
  }
  if (a.dw_p) add_peephole_gradient(a, dg, ld, a.dw_p);
}

template void layer_backward_steps<float>(const LayerBackward<float>&);
template void layer_backward_steps<double>(const LayerBackward<double>&);
template void layer_backward_weights<float>(const LayerBackward<float>&);
template void layer_backward_weights<double>(const LayerBackward<double>&);

}  // namespace rnnfast
