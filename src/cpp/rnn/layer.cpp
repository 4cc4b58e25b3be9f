#include "rnn/layer.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>

#include "kernels/table.h"
#include "rnn/plan.h"
#include "runtime/threads.h"

namespace rnnfast {
namespace {

using kernels::gemm;
using kernels::gemm_on_this_thread;
using kernels::PackedB;
using kernels::Trans;

// Which of the rows [b0, b1) still run at step t: active[b - b0].
void mark_active(const int64_t* lengths, index_t b0, index_t b1, index_t t, uint8_t* active) {
  for (index_t b = b0; b < b1; ++b) active[b - b0] = !lengths || t < lengths[b];
}

// Copies n values of src to dst, or zeros when there is no src (a state not given).
template <typename T>
void copy_or_zero(const T* src, T* dst, index_t n) {
  if (src) {
    std::copy(src, src + n, dst);
  } else {
    std::fill(dst, dst + n, T(0));
  }
}

// Index in hs/cs of the state step t starts from and of the one it makes.
inline index_t state_before(bool reverse, index_t t) {
  return reverse ? t + 1 : t;
}
inline index_t state_after(bool reverse, index_t t) {
  return reverse ? t : t + 1;
}

// The team of a layer's time loop, and what one member of it computes. A member owns rows (all
// units) or groups of units (all rows, meeting the others at a barrier each step); after a
// barrier that went solo, the soloist owns everything and the others have left.
struct Team {
  RecurrencePlan plan;
  index_t batch, groups, state_groups;  // groups of H units, and of the state's S units
  std::unique_ptr<StepBarrier> barrier;
  std::atomic<bool> went_solo{false};

  Team(Cell cell, index_t steps, index_t batch_, index_t input, index_t hidden, index_t state,
       index_t width)
      : plan(plan_recurrence(cell, steps, batch_, input, hidden, width)),
        batch(batch_),
        groups(ceil_div(hidden, width)),
        state_groups(ceil_div(state, width)) {}

  // Threads to ask for (a busy machine's history may still shrink the team: run_team).
  int wanted() const { return plan.threads; }

  // Interrupts: every member leaves at the top of iteration stop_at. The caller's thread sets it
  // to the iteration after the one it is in, before that iteration's barrier, so members that
  // share units all see it at the same iteration (members owning rows need no agreement).
  std::atomic<index_t> stop_at{std::numeric_limits<index_t>::max()};
  index_t poll_every = 1;  // iterations between polls: about 4M multiply-adds apart

  void set_poll_interval(index_t work_per_step) {
    poll_every =
        std::clamp<index_t>((index_t{1} << 22) / std::max<index_t>(work_per_step, 1), 1, 64);
  }
  // A member that left a team gone solo waits for the soloist: on the caller's thread it goes
  // on polling, and a stop makes the soloist leave at its next step.
  static void poll_while_waiting(void* team) {
    Team& t = *static_cast<Team*>(team);
    if (t.interrupt && t.interrupt->check()) t.stop_at.store(0, std::memory_order_relaxed);
  }
  Interrupt* interrupt = nullptr;

  // At the top of iteration i: whether to leave now.
  bool stopping(index_t i) {
    if (i >= stop_at.load(std::memory_order_relaxed)) return true;
    if (interrupt && i % poll_every == 0 && interrupt->check()) {
      index_t at = stop_at.load(std::memory_order_relaxed);
      while (i + 1 < at && !stop_at.compare_exchange_weak(at, i + 1, std::memory_order_relaxed)) {
      }
    }
    return false;
  }
};

struct Member {
  int id, team;
  index_t b0, b1, g0, g1;
  index_t s0, s1;  // groups of the state's units (a projected LSTM's P; else g0, g1)
  bool meet;       // units are shared: meet the others after every phase
  bool solo = false;
  Patience patience;

  Member(Team& t, int id_, int team_) : id(id_), team(team_) {
    const bool rows = t.plan.by_rows || team == 1;
    const Share r = rows ? share_of(t.batch, id, team) : Share{0, t.batch};
    const Share g = rows ? Share{0, t.groups} : share_of(t.groups, id, team);
    const Share sg = rows ? Share{0, t.state_groups} : share_of(t.state_groups, id, team);
    b0 = r.first, b1 = r.last, g0 = g.first, g1 = g.last, s0 = sg.first, s1 = sg.last;
    meet = !rows;
  }

  // After the work that others read: wait for them. False when this member must leave.
  bool sync(Team& t) {
    if (!meet) return true;
    const auto outcome = t.barrier->arrive(id, patience.before_wait());
    patience.after_wait();
    patience.working();
    switch (outcome) {
      case StepBarrier::After::kTogether:
        return true;
      case StepBarrier::After::kSolo:
        g0 = 0, g1 = t.groups, s0 = 0, s1 = t.state_groups, meet = false, solo = true;
        t.went_solo = true;
        return true;
      case StepBarrier::After::kLeave:
        break;
    }
    return false;
  }
};

// One workspace buffer from the pool, carved into pieces (each 64-byte aligned): one pool
// transaction a call instead of one per array (they cost as much as a small step's work).
template <typename T>
class Workspace {
 public:
  Workspace(const std::shared_ptr<BufferPool>& pool, std::initializer_list<index_t> sizes) {
    index_t total = 0;
    for (index_t n : sizes) total += round(n);
    buffer_ = Buffer<T>(pool, total);
  }
  // The next piece of n values (the pieces are handed out in the constructor's order).
  T* take(index_t n) {
    T* p = buffer_.data() + used_;
    used_ += round(n);
    return n ? p : nullptr;
  }
  uint8_t* take_bytes(index_t n) { return reinterpret_cast<uint8_t*>(take(bytes_as_values(n))); }
  static index_t bytes_as_values(index_t n) {
    return (n + static_cast<index_t>(sizeof(T)) - 1) / static_cast<index_t>(sizeof(T));
  }

 private:
  static index_t round(index_t n) {
    constexpr index_t align = 64 / sizeof(T);
    return (n + align - 1) / align * align;
  }
  Buffer<T> buffer_;
  index_t used_ = 0;
};

// C (m x n) = A B or += for rows of A read in place, in pieces of about 2^30 multiply-adds with
// `interrupt` asked between them (rows are independent: the pieces give the whole product's bits).
template <typename T>
void gemm_rows(Interrupt* interrupt, index_t m, index_t n, index_t k, const T* a, index_t lda,
               const PackedB<T>& b, bool accumulate, T* c, index_t ldc) {
  const index_t piece =
      interrupt ? std::max<index_t>(256, (index_t{1} << 30) / std::max<index_t>(n * k, 1)) : m;
  for (index_t r = 0; r < m; r += piece) {
    gemm(Trans::No, std::min(piece, m - r), n, k, a + r * lda, lda, b, accumulate, c + r * ldc,
         ldc);
    if (interrupt_check(interrupt)) return;
  }
}

// Runs body(member) on the layer's team; the barrier is built inside the region, for the team
// OpenMP granted.
template <typename Body>
void run_layer_team(Team& team, const Body& body) {
  std::atomic<bool> met{false};  // a team met at barriers: a trial worth recording
  run_team(
      team.wanted(),
      [&](int id, int size) {
        if (size > 1 && !team.plan.by_rows) {
#pragma omp single
          {
            team.barrier = std::make_unique<StepBarrier>(size);
            met = true;
          }
        }  // (the implicit barrier of `single`: everyone sees it built)
        Member m(team, id, size);
        body(m);
        if (team.barrier) team.barrier->finish(id, &Team::poll_while_waiting, &team);
      },
      /*learn=*/team.plan.by_rows);  // a team meeting every step learns at its barriers
  if (met) contention::record(team.went_solo);
}

// Rows [r0, r1) of the input projection x W_ih^T when x is one-hot: row ids[r] of W_ih^T.
template <typename T>
void project_one_hot(const PackedB<T>& w_ih_t, const int64_t* ids, index_t r0, index_t r1, T* out,
                     index_t ld) {
  for (index_t r = r0; r < r1; ++r) w_ih_t.copy_row(ids[r], out + (r - r0) * ld);
}

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

template <typename T>
void forward_kernel(const kernels::KernelTable<T>& kt, Cell cell,
                    const kernels::ForwardStep<T>& s) {
  switch (cell) {
    case Cell::RnnTanh:
    case Cell::RnnRelu:
      return kt.rnn_forward(s);
    case Cell::Lstm:
      return kt.lstm_forward(s);
    case Cell::Gru:
      return kt.gru_forward(s);
    case Cell::GruResetBefore:
      return kt.gru_rb_gates(s);  // its second part is called on its own
  }
}

template <typename T>
void backward_kernel(const kernels::KernelTable<T>& kt, Cell cell,
                     const kernels::BackwardStep<T>& s) {
  switch (cell) {
    case Cell::RnnTanh:
    case Cell::RnnRelu:
      return kt.rnn_backward(s);
    case Cell::Lstm:
      return kt.lstm_backward(s);
    case Cell::Gru:
      return kt.gru_backward(s);
    case Cell::GruResetBefore:
      return kt.gru_rb_backward(s);
  }
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
  const ForwardPacks<T>& pk = *a.packs;
  // (A one-hot input's projection is a copy: it weighs nothing in the plan.)
  Team team(a.cell, steps, batch, a.ids ? 0 : in, hd, sd, kt.width);

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
  Workspace<T> ws(a.pool, {pre_size, states_size, cells_size, extra_size,
                           team.plan.threads * pack_size, active_size});
  T* pre = ws.take(pre_size);
  T* states = ws.take(states_size);
  T* cells = ws.take(cells_size);
  T* extra_space = ws.take(extra_size);
  T* pack_space = ws.take(team.plan.threads * pack_size);
  uint8_t* active = ws.take_bytes(team.plan.threads * batch);

  T* h_states = training ? a.hs : states;
  T* c_states = lstm ? (training ? a.cs : cells) : nullptr;
  T* extra = training ? a.extra : extra_space;
  const index_t first = training ? state_before(a.reverse, a.reverse ? steps - 1 : 0) : 0;
  initial(a.h0, h_states + first * bs, bs);
  if (lstm) initial(a.c0, c_states + first * bh, bh);

  run_layer_team(team, [&](Member& m) {
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
      st.p.w = pk.rec.data.data();
      st.p.w_stride = pk.rec.stride;
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
      if (lstm) {
        st.c_prev = c_states + before * bh + m.b0 * hd;
        st.c = c_states + after * bh + m.b0 * hd;
      }
      st.y = proj ? nullptr : a.y + (t * batch + m.b0) * a.ldy;
      st.ldy = a.ldy;
      if (!proj) st.extra = extra_rows;
      st.active = act;
      st.relu = a.cell == Cell::RnnRelu;
      st.keep_gates = training;
      st.project = proj;
      forward_kernel(kt, a.cell, st);
      if (two_part || proj) {  // a second product needs every unit of the first's output
        if (!m.sync(team)) return;
        kernels::ForwardStep<T> st2 = st;
        if (proj) {  // h = m W_hr^T
          st2.p.depth = hd;
          st2.p.a = extra_rows;
          st2.p.lda = hd;
          st2.p.w = pk.proj.data.data();
          st2.p.w_stride = pk.proj.stride;
          st2.p.g0 = m.s0;
          st2.p.g1 = m.s1;
          st2.p.hidden = sd;
          st2.h = h_states + after * bs + m.b0 * sd;
          st2.y = a.y + (t * batch + m.b0) * a.ldy;
          kt.lstm_project(st2);
        } else {  // n = tanh(... + W_hn (r*h))
          st2.p.a = st.extra;
          st2.p.w = pk.rec_n.data.data();
          st2.p.w_stride = pk.rec_n.stride;
          st2.p.g0 = m.g0;
          st2.p.g1 = m.g1;
          kt.gru_rb_update(st2);
        }
      }
      if (!m.sync(team)) return;
    }
  });
  const index_t last = training ? (a.reverse ? 0 : steps) : steps % 2;
  std::copy(h_states + last * bs, h_states + (last + 1) * bs, a.h_n);
  if (lstm) std::copy(c_states + last * bh, c_states + (last + 1) * bh, a.c_n);
}

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
  const bool lstm = info.cell_state, two_part = info.two_part, lbr = a.cell == Cell::Gru;
  const bool proj = a.proj > 0;
  auto initial = copy_or_zero<T>;  // a final state's gradient, or zeros
  if (steps == 0 || batch == 0) {  // nothing ran: the gradient passes to the initial state
    initial(a.dh_n, a.dh0, bs);
    if (lstm) initial(a.dc_n, a.dc0, bh);
    return;
  }
  const auto& kt = kernels::active_kernels<T>();
  const BackwardPacks<T>& pk = *a.packs;
  Team team(a.cell, steps, batch, in, hd, sd, kt.width);
  const index_t active_size = Workspace<T>::bytes_as_values(team.plan.threads * batch);
  Workspace<T> ws(a.pool, {bs, lstm ? bh : 0, active_size});
  T* direct = ws.take(bs);
  T* dc = ws.take(lstm ? bh : 0);
  T* dhs = a.dh_all;  // dL/dh of every step, for W_hr's gradient
  uint8_t* active = ws.take_bytes(team.plan.threads * batch);
  team.set_poll_interval(batch * gh * sd);
  team.interrupt = a.interrupt;
  initial(a.dh_n, direct, bs);
  if (lstm) initial(a.dc_n, dc, bh);
  const index_t depth = two_part ? 2 * hd : gh;  // of the product into dh_prev

  run_layer_team(team, [&](Member& m) {
    uint8_t* act = active + m.id * batch;
    index_t t_next = -1;  // the step processed before (later in the sequence's own order)
    for (index_t s = steps - 1; s >= 0; --s) {
      if (team.stopping(steps - 1 - s)) return;
      const index_t t = a.reverse ? steps - 1 - s : s;
      mark_active(a.lengths, m.b0, m.b1, t, act);
      kernels::BackwardStep<T> st;
      st.p.rows = m.b1 - m.b0;
      st.p.depth = depth;
      st.p.a = t_next >= 0 ? a.gates + (t_next * batch + m.b0) * ld : nullptr;
      st.p.lda = ld;
      st.p.w = pk.rec.data.data();
      st.p.w_stride = pk.rec.stride;
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
        st.p.w = pk.proj.data.data();
        st.p.w_stride = pk.proj.stride;
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
      if (lstm) {
        st.c_prev = a.cs + state_before(a.reverse, t) * bh + m.b0 * hd;
        st.c = a.cs + state_after(a.reverse, t) * bh + m.b0 * hd;
        st.dc = dc + m.b0 * hd;
      }
      if (lbr) {
        st.extra = a.extra + t * bh + m.b0 * hd;
        st.dg_n = a.extra + t * bh + m.b0 * hd;  // in place, as dg
      }
      st.relu = a.cell == Cell::RnnRelu;
      st.peep = pk.peep.empty() ? nullptr : pk.peep.data();
      backward_kernel(kt, a.cell, st);
      if (two_part) {  // dL/d(r*h) = dn W_hn: every unit's dn first
        if (!m.sync(team)) return;
        kernels::BackwardStep<T> st2 = st;
        st2.p.depth = hd;
        st2.p.a = st.dg + 2 * hd;
        st2.p.w = pk.rec_n.data.data();
        st2.p.w_stride = pk.rec_n.stride;
        st2.p.g0 = m.g0;
        st2.p.g1 = m.g1;
        kt.gru_rb_backward_reset(st2);
      }
      if (!m.sync(team)) return;  // the next product reads every unit's gradients
      t_next = t;
    }
    kernels::BackwardStep<T> fin;
    fin.p.rows = m.b1 - m.b0;
    fin.p.depth = depth;
    fin.p.a = a.gates + (t_next * batch + m.b0) * ld;
    fin.p.lda = ld;
    fin.p.w = pk.rec.data.data();
    fin.p.w_stride = pk.rec.stride;
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

// The weight gradients, one product each over all timesteps, from the gate gradients the steps
// left in the tape.
template <typename T>
void layer_backward_weights(const LayerBackward<T>& a) {
  const CellInfo& info = cell_info(a.cell);
  const index_t steps = a.steps, batch = a.batch, hd = a.hidden, in = a.input;
  if (steps == 0 || batch == 0) return;
  const FlushDenormals flush;
  const index_t sd = a.proj ? a.proj : hd;
  const index_t gh = info.gates * hd, bs = batch * sd, rows_all = steps * batch;
  const index_t ld = gates_stride(a.cell, hd, static_cast<index_t>(sizeof(T)));
  const bool two_part = info.two_part, lbr = a.cell == Cell::Gru, proj = a.proj > 0;
  const T* dg = a.gates;
  const T* dhs = a.dh_all;
  // Padding rows of x and of the carried states are packed as zeros: their gate gradients are
  // zero, but 0 * NaN is not.
  const kernels::PaddingRows padding{a.lengths, batch};
  const PackedB<T> h_rows(Trans::No, rows_all, sd, a.hs + (a.reverse ? bs : 0), sd, padding);
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
  if (!a.ids) x_rows.emplace(Trans::No, rows_all, in, a.x, in, padding);
  if (two_part) rh_rows.emplace(Trans::No, rows_all, hd, a.extra, hd, padding);
  if (proj) m_rows.emplace(Trans::No, rows_all, hd, a.extra, hd, padding);
  std::unique_lock<std::mutex> lock;
  if (a.grad_lock) lock = std::unique_lock<std::mutex>(*a.grad_lock);
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
      gemm(Trans::Yes, 2 * hd, in, rows_all, dg, ld, *x_rows, true, a.dw_ih, in);
      gemm(Trans::Yes, hd, in, rows_all, static_cast<const T*>(a.extra), hd, *x_rows, true,
           a.dw_ih + 2 * hd * in, in);
    } else {
      gemm(Trans::Yes, gh, in, rows_all, dg, ld, *x_rows, true, a.dw_ih, in);
    }
  }
  if (two_part) {  // W_hn multiplies r * h_prev, kept in extra
    gemm(Trans::Yes, 2 * hd, hd, rows_all, dg, ld, h_rows, true, a.dw_hh, hd);
    gemm(Trans::Yes, hd, hd, rows_all, dg + 2 * hd, ld, *rh_rows, true, a.dw_hh + 2 * hd * hd, hd);
  } else {
    gemm(Trans::Yes, gh, sd, rows_all, dg, ld, h_rows, true, a.dw_hh, sd);
  }
  if (proj) {  // dW_hr += dH^T m (m of an ended row is zero, and its dh too)
    gemm(Trans::Yes, sd, hd, rows_all, dhs, sd, *m_rows, true, a.dw_hr, hd);
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

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward_steps<float>(const LayerBackward<float>&);
template void layer_backward_steps<double>(const LayerBackward<double>&);
template void layer_backward_weights<float>(const LayerBackward<float>&);
template void layer_backward_weights<double>(const LayerBackward<double>&);

}  // namespace rnnfast
