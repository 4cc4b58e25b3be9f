// What the forward and backward layer loops (rnn/layer_forward.cpp, rnn/layer_backward.cpp)
// share: the team of a layer's time loop and its members, the workspace, products in pieces
// that a stop request can end, and the indexing of the tape's states. Internal to rnn/.
#pragma once
#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>

#include "kernels/table.h"
#include "rnn/cell_ops.h"
#include "rnn/layer.h"
#include "rnn/plan.h"
#include "runtime/threads.h"

namespace rnnfast::layer_detail {

using kernels::gemm;
using kernels::gemm_on_this_thread;
using kernels::PackedB;
using kernels::Trans;

// Which of the rows [b0, b1) still run at step t: active[b - b0].
inline void mark_active(const int64_t* lengths, index_t b0, index_t b1, index_t t,
                        uint8_t* active) {
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
       index_t width, index_t value_bytes, Precision precision)
      : plan(plan_recurrence(cell, steps, batch_, input, hidden, width, value_bytes,
                             recurrent_tile_rows(precision))),
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
  PairFlags flags;  // how a team of two in parts meets (Member::meet_after)

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
  bool by_flags = false;  // meets by Team::flags (a team of two in parts) rather than the barrier
  Patience patience;

  Member(Team& t, int id_, int team_) : id(id_), team(team_) {
    const bool rows = t.plan.by_rows || team == 1;
    const Share r = rows ? share_of(t.batch, id, team) : Share{0, t.batch};
    const Share g = rows ? Share{0, t.groups} : share_of(t.groups, id, team);
    const Share sg = rows ? Share{0, t.state_groups} : share_of(t.state_groups, id, team);
    b0 = r.first, b1 = r.last, g0 = g.first, g1 = g.last, s0 = sg.first, s1 = sg.last;
    meet = !rows;
  }

  // In parts (a team of two, rnn/layer_forward.cpp): this member has done `steps` steps.
  void publish(Team& t, index_t steps) {
    if (by_flags) by_flags = t.flags.publish(id, steps);
  }
  // Meets the teammate once it has done `steps` steps: by flags while the team uses them, else at
  // the barrier (sync). False when this member must leave.
  bool meet_after(Team& t, index_t steps) {
    if (by_flags) {
      // Clocks are read only past a brief wait: three reads a step cost a B = 1 LSTM step 5%.
      // (Brief waits count as work then, which only lengthens the patience a little.)
      PairFlags::Outcome outcome = t.flags.await_briefly(id, steps, t.stop_at);
      if (outcome == PairFlags::Outcome::kPending) {
        outcome = t.flags.await(id, steps, t.stop_at, patience.before_wait());
        patience.after_wait();
        patience.working();
      }
      if (outcome == PairFlags::Outcome::kGo) return true;
      if (outcome == PairFlags::Outcome::kStop) return false;
      by_flags = false;
    }
    return sync(t);
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

// Where a layer's forward product splits its depth (kernels::Product::split): between the unit
// groups of the two members of a team of two, whatever the team (one thread included), so that
// the bits never depend on it; 0 (one block) for a single group.
inline index_t depth_split(index_t groups, index_t width) {
  return share_of(groups, 1, 2).first * width;
}

// Asks for the cache lines of values [lo, hi) of `row`.
template <typename T>
void prefetch_values(const T* row, index_t lo, index_t hi) {
  constexpr index_t kLine = static_cast<index_t>(kCacheLine / sizeof(T));
  for (index_t i = lo; i < hi; i += kLine) __builtin_prefetch(row + i);
  if (hi > lo) __builtin_prefetch(row + hi - 1);
}

// One step of member m's units in two parts (kernels::SumPart), as a team of two in parts runs
// it: `kernel(st)` (ops.forward or ops.backward) with st.p set to the product's part and to a
// range of unit groups. Its own block of the product; the team's meeting (the teammate's
// previous step done: what it wrote may be read, and what it read may be written);
// fetch_rest(), then the rest of the product and the epilogue; then the step is published. A
// member that goes solo at the meeting also runs, whole, the groups of the member that left
// (which had written nothing of the step). False when m must leave.
template <typename Step, typename Kernel, typename Fetch>
bool step_in_parts(Team& team, Member& m, index_t step, Step& st, Kernel kernel,
                   const Fetch& fetch_rest) {
  const auto run = [&](kernels::SumPart part, index_t g0, index_t g1) {
    st.p.part = part;
    st.p.g0 = g0;
    st.p.g1 = g1;
    kernel(st);
  };
  const index_t g0 = m.g0, g1 = m.g1;
  st.p.own_low = g0 == 0;
  run(kernels::SumPart::kOwn, g0, g1);
  if (!m.meet_after(team, step)) return false;
  fetch_rest();
  run(kernels::SumPart::kRest, g0, g1);
  m.publish(team, step + 1);
  if (!m.solo) return true;
  for (const Share others : {Share{0, g0}, Share{g1, team.groups}})
    if (others.first < others.last) run(kernels::SumPart::kWhole, others.first, others.last);
  return true;
}

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
  const bool fresh = run_team(
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
  if (met && !fresh) contention::record(team.went_solo);  // (fresh: see run_team)
}

// Rows [r0, r1) of the input projection x W_ih^T when x is one-hot: row ids[r] of W_ih^T.

}  // namespace rnnfast::layer_detail
