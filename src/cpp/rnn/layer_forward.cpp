// A layer direction's forward: the input projection, then the time loop of fused steps
// (rnn/layer.h for the contract).
#include "rnn/cell_ops.h"
#include "rnn/layer.h"
#include "rnn/layer_team.h"

namespace rnnfast {
namespace {

using namespace layer_detail;  // the loop machinery both directions share (rnn/layer_team.h)

template <typename T>
void project_one_hot(const PackedB<T>& w_ih_t, const int64_t* ids, index_t r0, index_t r1, T* out,
                     index_t ld) {
  for (index_t r = r0; r < r1; ++r) w_ih_t.copy_row(ids[r], out + (r - r0) * ld);
}

}  // namespace

template <typename T>
void layer_forward(const LayerForward<T>& a) {
  const FlushDenormals flush;
  const CellInfo& info = cell_info(a.cell);
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, in = a.input;
  const index_t sd = a.proj ? a.proj : hd;  // the state's size, S
  const index_t gh = info.gates * hd, bh = batch * hd, bs = batch * sd;
  const index_t ld = gates_stride(a.cell, hd, static_cast<index_t>(sizeof(T)));  // the tape's
  const bool training = a.gates != nullptr, lstm = info.cell_state, two_part = info.two_part;
  const bool proj = a.proj > 0;
  auto initial = copy_or_zero<T>;  // an initial state, or zeros
  if (steps == 0 || batch == 0) {  // no step to run: O(1) whatever T (or B) is
    initial(a.h0, a.h_n, bs);
    if (lstm) initial(a.c0, a.c_n, bh);
    if (training) initial(a.h0, a.hs, bs);
    if (training && lstm) initial(a.c0, a.cs, bh);
    return;
  }
  const auto& kt = kernels::active_kernels<T>();
  const CellOps<T> ops = cell_ops(kt, a.cell);  // chosen once: the loop calls through it
  const ForwardPacks<T>& pk = *a.packs;
  // (A one-hot input's projection is a copy: it weighs nothing in the plan.)
  Team team(a.cell, steps, batch, a.ids ? 0 : in, hd, sd, kt.width, sizeof(T), pk.precision);

  // The input projection x W_ih^T. Training keeps all of it in the tape: one product over every
  // step first. Inference projects chunks of steps as the loop reaches them and so keeps
  // O(B*H) of it, not O(T*B*H).
  if (training && a.ids) {
    parallel_for(steps * batch, 64, [&](index_t r0, index_t r1) {
      project_one_hot(pk.w_ih_t, a.ids, r0, r1, a.gates + r0 * ld, ld);
    });
  } else if (training) {
    gemm_rows(a.interrupt, steps * batch, gh, in, a.x, in, pk.w_ih_t, false, a.gates, ld);
    if (interrupt_requested(a.interrupt)) return;
  }
  team.set_poll_interval(batch * gh * (sd + (training || a.ids ? 0 : in)));
  team.interrupt = a.interrupt;
  const index_t chunk = std::clamp<index_t>(256 / batch, 1, steps);
  const bool rows_mode = team.plan.by_rows;
  const index_t pre_size = training ? 0 : chunk * batch * (gh + (rows_mode && !a.ids ? in : 0));
  const index_t states_size = training ? 0 : 2 * bs, cells_size = training || !lstm ? 0 : 2 * bh;
  const index_t extra_size = !training && (two_part || proj) ? bh : 0;  // r*h_prev, or m
  const index_t active_size = Workspace<T>::bytes_as_values(team.plan.threads * batch);
  const index_t pack_size = kernels::gemm_workspace_size(kt);
  // A team of two owning units sums each step's product in two parts (kernels::Product::split):
  // the block of its own units' states, then, after meeting (which now stands between the parts
  // instead of after the step), the teammate's block, so that the state crossing between cores
  // travels while the first part runs. One batch row only (kernels/recurrent_impl.h splits
  // one-row tiles: more rows gained 1.12x at B = 4 but tripled the kernels' compile time), and
  // cells whose step has a second product keep one block.
  const bool one_product = !proj && !two_part;
  const index_t split = batch == 1 && one_product ? depth_split(team.groups, kt.width) : 0;
  const bool in_parts =
      split > 0 && !rows_mode && team.plan.threads == 2 && pk.precision == Precision::Native;
  // A member's room for one block's sums (kernels::Product::partial), any groups it may run.
  const index_t partial_size = split > 0 ? batch * info.gates * team.groups * kt.width : 0;
  Workspace<T> ws(a.pool,
                  {pre_size, states_size, cells_size, extra_size, team.plan.threads * pack_size,
                   active_size, team.plan.threads * partial_size});
  T* pre = ws.take(pre_size);
  T* states = ws.take(states_size);
  T* cells = ws.take(cells_size);
  T* extra_space = ws.take(extra_size);
  T* pack_space = ws.take(team.plan.threads * pack_size);
  uint8_t* active = ws.take_bytes(team.plan.threads * batch);
  T* partials = ws.take(team.plan.threads * partial_size);

  T* h_states = training ? a.hs : states;
  T* c_states = lstm ? (training ? a.cs : cells) : nullptr;
  T* extra = training ? a.extra : extra_space;
  const index_t first = training ? state_before(a.reverse, a.reverse ? steps - 1 : 0) : 0;
  initial(a.h0, h_states + first * bs, bs);
  if (lstm) initial(a.c0, c_states + first * bh, bh);

  run_layer_team(team, [&](Member& m) {
    m.by_flags = in_parts && m.meet;
    uint8_t* act = active + m.id * batch;
    T* pack = pack_space + m.id * pack_size;
    // Inference: where step t's projection of this member's rows lives. Members owning rows keep
    // their rows of a chunk contiguous (x's rows gathered first) for one product; members
    // sharing units each project some rows of the chunk for every unit, then meet.
    index_t t_lo = 0;
    auto pre_row = [&](index_t t) -> T* {
      if (training) return a.gates + (t * batch + m.b0) * ld;
      if (rows_mode) return pre + (chunk * m.b0 + (t - t_lo) * (m.b1 - m.b0)) * gh;
      return pre + ((t - t_lo) * batch + m.b0) * gh;
    };
    for (index_t s = 0; s < steps; ++s) {
      if (team.stopping(s)) return;
      const index_t t = a.reverse ? steps - 1 - s : s;
      if (!training && s % chunk == 0) {
        const index_t n = std::min(chunk, steps - s);
        t_lo = a.reverse ? steps - s - n : s;
        if (rows_mode && a.ids) {
          const index_t rows = m.b1 - m.b0;
          for (index_t i = 0; i < n; ++i)
            project_one_hot(pk.w_ih_t, a.ids, (t_lo + i) * batch + m.b0, (t_lo + i) * batch + m.b1,
                            pre_row(t_lo) + i * rows * gh, gh);
        } else if (rows_mode) {
          const index_t rows = m.b1 - m.b0;
          T* xg = pre + chunk * batch * gh + chunk * m.b0 * in;
          for (index_t i = 0; i < n; ++i)
            std::copy(a.x + ((t_lo + i) * batch + m.b0) * in,
                      a.x + ((t_lo + i) * batch + m.b1) * in, xg + i * rows * in);
          gemm_on_this_thread(Trans::No, n * rows, gh, in, xg, in, pk.w_ih_t, false, pre_row(t_lo),
                              gh, pack);
        } else {
          // In parts, members meet mid-step: the previous step may still read the chunk's rows.
          if (in_parts && m.meet && s > 0 && !m.meet_after(team, s)) return;
          const Share r = m.meet ? share_of(n * batch, m.id, m.team) : Share{0, n * batch};
          if (a.ids) {
            project_one_hot(pk.w_ih_t, a.ids, t_lo * batch + r.first, t_lo * batch + r.last,
                            pre + r.first * gh, gh);
          } else {
            gemm_on_this_thread(Trans::No, r.last - r.first, gh, in,
                                a.x + (t_lo * batch + r.first) * in, in, pk.w_ih_t, false,
                                pre + r.first * gh, gh, pack);
          }
          if (!m.sync(team)) return;
        }
      }
      const index_t before = training ? state_before(a.reverse, t) : s % 2;
      const index_t after = training ? state_after(a.reverse, t) : (s + 1) % 2;
      mark_active(a.lengths, m.b0, m.b1, t, act);
      T* extra_rows = extra ? extra + (training ? t * bh : 0) + m.b0 * hd : nullptr;
      kernels::ForwardStep<T> st;
      st.p.rows = m.b1 - m.b0;
      st.p.depth = sd;
      st.p.a = h_states + before * bs + m.b0 * sd;
      st.p.lda = sd;
      pk.rec.bind(st.p);
      st.p.g0 = m.g0;
      st.p.g1 = m.g1;
      st.p.hidden = hd;
      st.gates = pre_row(t);
      st.ld_gates = training ? ld : gh;
      st.bias = pk.bias.empty() ? nullptr : pk.bias.data();
      st.bias_hn = pk.bias_hn.empty() ? nullptr : pk.bias_hn.data();
      st.peep = pk.peep.empty() ? nullptr : pk.peep.data();
      st.h_prev = st.p.a;
      st.h = proj ? extra_rows : h_states + after * bs + m.b0 * sd;  // projected: m
      if (c_states) {
        st.c_prev = c_states + before * bh + m.b0 * hd;
        st.c = c_states + after * bh + m.b0 * hd;
      }
      st.y = proj ? nullptr : a.y + (t * batch + m.b0) * a.ldy;
      st.ldy = a.ldy;
      if (!proj) st.extra = extra_rows;
      st.active = act;
      st.relu = ops.relu;
      st.keep_gates = training;
      st.project = proj;
      st.p.split = split;
      st.p.partial = partials + m.id * partial_size;
      st.p.ld_partial = (m.g1 - m.g0) * info.gates * kt.width;
      if (in_parts && m.meet) {  // (a member gone solo, at any meeting, runs whole steps)
        const index_t lo = m.g0 * kt.width, hi = std::min(m.g1 * kt.width, hd);
        // The epilogue's input projection, fetched before the product: the rows of a chunk
        // another core projected came in only after the product, a cross-core miss a step.
        for (index_t r = 0; r < st.p.rows; ++r)
          for (index_t k = 0; k < info.gates; ++k)
            prefetch_values(st.gates + r * st.ld_gates + k * hd, lo, hi);
        const auto fetch_rest = [&] {  // the teammate's state, all at once
          for (index_t r = 0; r < st.p.rows; ++r)
            prefetch_values(st.p.a + r * st.p.lda, lo == 0 ? split : 0, lo == 0 ? hd : split);
        };
        if (!step_in_parts(team, m, s, st, ops.forward, fetch_rest)) return;
        continue;
      }
      ops.forward(st);
      if (ops.forward_part2 || proj) {  // a second product needs every unit of the first's
        if (!m.sync(team)) return;
        kernels::ForwardStep<T> st2 = st;
        st2.p.split = 0;
        if (proj) {  // h = m W_hr^T
          st2.p.depth = hd;
          st2.p.a = extra_rows;
          st2.p.lda = hd;
          pk.proj.bind(st2.p);
          st2.p.g0 = m.s0;
          st2.p.g1 = m.s1;
          st2.p.hidden = sd;
          st2.h = h_states + after * bs + m.b0 * sd;
          st2.y = a.y + (t * batch + m.b0) * a.ldy;
          kt.lstm_project(st2);
        } else {  // n = tanh(... + W_hn (r*h))
          st2.p.a = st.extra;
          pk.rec_n.bind(st2.p);
          st2.p.g0 = m.g0;
          st2.p.g1 = m.g1;
          ops.forward_part2(st2);
        }
      }
      if (!m.sync(team)) return;
    }
  });
  const index_t last = training ? (a.reverse ? 0 : steps) : steps % 2;
  std::copy(h_states + last * bs, h_states + (last + 1) * bs, a.h_n);
  if (lstm) std::copy(c_states + last * bh, c_states + (last + 1) * bh, a.c_n);
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);

}  // namespace rnnfast
