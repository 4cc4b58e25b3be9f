// The thread-count setting, the one way kernels run on several threads (run_team), and the
// barrier that threads sharing a sequence meet at once a step.
//
// A parallel region may get fewer threads than it asks for (OMP_THREAD_LIMIT, OMP_DYNAMIC, a call
// from inside another parallel region, a thread that cannot be created), so every region plans
// its work from the team it actually got: body(thread, team) for thread in [0, team). Work is
// split so that who computes an element never changes how, so results are bitwise the same for
// any team. A process forked after rnnfast started a team runs single-threaded: libgomp's pool
// does not survive fork() and the child would hang in its first region.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "runtime/fpenv.h"
#include "runtime/types.h"

#ifdef RNNFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace rnnfast {

// The most threads set_num_threads accepts: far beyond any useful team, small enough that a
// typo (99999999999) is refused rather than tried.
inline constexpr int kMaxThreads = 1024;

// The only mutable global setting of the library: how many threads kernels may use.
// Throws std::invalid_argument for n outside [1, kMaxThreads], std::runtime_error when n threads
// cannot be started here (the setting is then left as it was).
void set_num_threads(int n);
int get_num_threads();
// The team a region may ask for now: the setting, capped by what could be started, 1 in a child
// forked after rnnfast ran a team.
int usable_threads();
bool have_openmp();
bool in_forked_child();

namespace detail {
int team_for(int wanted);  // usable_threads() capped by `wanted`; records that a team ran
// Whether a team of n started from this thread needs threads libgomp has not made for it yet
// (its pools are per calling thread, and grow on demand); records that it will have them.
bool team_is_new(int n);
// After a team region: the master's own work ended at `master_done`, the region at `end`.
void learn_from_region(std::chrono::steady_clock::time_point start,
                       std::chrono::steady_clock::time_point master_done,
                       std::chrono::steady_clock::time_point end);
// That a team region of this thread ended now (its threads spin a while, then sleep).
void team_ended();
}  // namespace detail

// RNNFAST_ALWAYS_TEAM=1 in the environment: every call, however small or late, asks for the
// whole team (tests comparing thread counts, whose calls come after the reference's NumPy work,
// a pause here, and are small). Read once.
bool always_team();

// Whether a call of `macs` multiply-adds starting now on this thread runs alone (as CallTeam
// below decides; never with always_team()).
bool call_runs_alone(index_t macs);

// For the calling thread: whether its small calls (those CallTeam would run alone after a pause)
// run alone even back to back. For calls made from inside another runtime's graph, whose own
// threads use the other cores between rnnfast's calls: in an onnxruntime session a B = 1 LSTM
// node's second thread saved it 0.07 ms, and its idle spin afterwards cost onnxruntime's next
// nodes about 0.2 ms a node (rnnfast/onnx/_session.py). Returns the previous setting.
bool set_small_calls_alone(bool alone);

// A call of `macs` multiply-adds, for its lifetime on the calling thread: when it is small and
// comes after a pause (no call or team region on this thread for longer than libgomp's threads
// spin before they sleep), its regions run on the calling thread alone. Waking a sleeping
// thread took 50-400 us on a 2-vCPU VM (a halted vCPU), and a B = 1 LSTM call of 5 steps took
// 1.4 ms on two threads after a 5 ms pause against 38 us on one: more than a second thread can
// save on a call of a few milliseconds of work. Calls made back to back (a loop) wake the team
// once, keep it awake and use it. Which thread computes what never changes a result.
class CallTeam {
 public:
  explicit CallTeam(index_t macs);
  ~CallTeam();
  CallTeam(const CallTeam&) = delete;
  CallTeam& operator=(const CallTeam&) = delete;

 private:
  bool capped_;
};

// The CPU the calling thread runs on now (-1 where that cannot be asked).
int current_cpu();

// For its lifetime, keeps the calling thread off CPU `cpu` when it finds itself on it: run_team's
// members move off the master's CPU (their affinity narrowed for the region, then restored).
// Linux wakes a sleeping thread on its waker's CPU when it judges them cache-affine, and left
// there a step-synchronised pair shares one core for the whole call: on a 2-vCPU VM, 4 of 5
// processes ran a B = 1 LSTM(128) sequence at 5 us a step on one CPU before going solo (3.1),
// the fifth at 2.4 on two; with OMP_PROC_BIND=spread every process ran at 2.4. Nothing is done
// when the thread is elsewhere already, where the affinity cannot be read, or when `cpu` is the
// only one it may use.
class AwayFromCpu {
 public:
  explicit AwayFromCpu(int cpu);
  ~AwayFromCpu();
  AwayFromCpu(const AwayFromCpu&) = delete;
  AwayFromCpu& operator=(const AwayFromCpu&) = delete;
  bool moved() const { return moved_; }

 private:
  bool moved_ = false;
  alignas(8) unsigned char saved_[128];  // the affinity to restore (a cpu_set_t)
};

// Runs body(thread, team) on a team of at most `wanted` threads, each thread with denormals
// flushed. `team` is the size OpenMP granted, which may be anything from 1 to `wanted`. A busy
// machine's history (see contention below) may make it 1. With `learn`, how long the master
// waited for its teammates at the end teaches that history: a teammate that lost its core to
// another process makes the master wait a scheduler's time slice, far longer than the work.
// A region that has libgomp start its threads teaches nothing: starting them took 0.1-7 ms on
// a 2-vCPU VM, and the first call of every process then backed the next four off to one
// thread. Returns whether this region was such a one.
template <typename Body>
bool run_team(int wanted, const Body& body, bool learn = true) {
  const int n = detail::team_for(wanted);
#ifdef RNNFAST_HAVE_OPENMP
  if (n > 1) {
    const bool fresh = detail::team_is_new(n);
    learn = learn && !fresh;
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    Clock::time_point master_done = start;
    const int master_cpu = current_cpu();
#pragma omp parallel num_threads(n)
    {
      const FlushDenormals flush;
      const AwayFromCpu apart(omp_get_thread_num() == 0 ? -1 : master_cpu);
      body(omp_get_thread_num(), omp_get_num_threads());
      if (learn && omp_get_thread_num() == 0) master_done = Clock::now();
    }
    if (learn) detail::learn_from_region(start, master_done, Clock::now());
    detail::team_ended();
    return fresh;
  }
#endif
  const FlushDenormals flush;
  body(0, 1);
  return false;
}

// Calls body(begin, end) on contiguous chunks of [0, n), each at least `grain` long, one chunk a
// thread. Serial when the range is small or one thread is allowed. The split only decides who
// computes an element, never how: every result is reduced in the same order whatever the team.
template <typename Body>
void parallel_for(index_t n, index_t grain, const Body& body) {
  if (n <= 0) return;
  const index_t g = std::max<index_t>(grain, 1);
  const index_t chunks = std::min<index_t>(get_num_threads(), (n + g - 1) / g);
  run_team(static_cast<int>(chunks),
           [&](int id, int count) { body(n * id / count, n * (id + 1) / count); });
}

// Where a team's members meet once per step of a sequence. A waiting member spins briefly, then
// yields its core, then sleeps (a futex on Linux): on a busy machine, a member whose teammate has
// been descheduled gives its core away instead of burning it. A member whose waiting shows its
// teammates losing their cores to other processes (see Patience) asks to go on alone: that barrier
// then ends with it as the soloist, who does the remaining work of every member while the others
// leave. Which member computes a slice never changes a result.
class StepBarrier {
 public:
  enum class After { kTogether, kSolo, kLeave };

  explicit StepBarrier(int team) : team_(team) {}
  StepBarrier(const StepBarrier&) = delete;
  StepBarrier& operator=(const StepBarrier&) = delete;

  // `patience`: how long to wait before asking to go alone (zero: ask at once).
  After arrive(int member, std::chrono::nanoseconds patience = std::chrono::milliseconds(2));
  bool went_solo() const { return soloist_.load(std::memory_order_relaxed) >= 0; }
  // Called by every member as it ends its work: the soloist says it is done; a member that left
  // sleeps here until then, rather than spin (as libgomp's end-of-region barrier would, for
  // milliseconds) on a core the soloist needs.
  // `while_waiting` is called about every millisecond while a member that left waits (the
  // caller's thread polls for Ctrl-C there: the soloist may be another thread).
  void finish(int member, void (*while_waiting)(void*) = nullptr, void* context = nullptr);

 private:
  static constexpr uint64_t kCountMask = 0xffffffffu;
  static constexpr uint64_t kSoloBit = uint64_t{1} << 32;

  void ask_to_go_alone(int member);
  After outcome(int member) const;

  // Together on one cache line: the member that completes a step touches all of them, and one
  // line is cheaper than three (aligning each to its own line made a B = 1 LSTM step of 2.7 us
  // take 4.5).
  const int team_;
  std::atomic<uint64_t> state_{0};       // arrivals this step, and the solo request
  std::atomic<uint32_t> generation_{0};  // steps completed (the futex word)
  std::atomic<int> sleepers_{0};
  std::atomic<int> requester_{-1};
  std::atomic<int> soloist_{-1};  // written once at most
  std::atomic<uint32_t> finished_{0};
};

// How a team of exactly two meets in a step loop without a shared counter: each member publishes
// the steps it has done on its own cache line and the other reads it, one line crossing the cores
// a meeting where StepBarrier's counter takes two or three, and the reader may do work that does
// not need its teammate between the publication and its wait. There is no going solo here: a
// member that waits past its patience asks for the barrier instead, and the next count published
// carries the switch, so that both members leave the flags at the same meeting (the first count
// carrying it is the one the other waits for next) and meet at a StepBarrier from then on.
class PairFlags {
 public:
  enum class Outcome { kGo, kSwitch, kStop, kPending };

  // Member `member` (0 or 1) has done `steps` steps. False when the count carried the switch
  // (asked for by either member): this member meets at the barrier from its next meeting on.
  bool publish(int member, index_t steps);
  // Waits until the other member has done `steps` steps (kGo), or its count carries the switch
  // (kSwitch). kStop when `stop_at` (the iteration at whose top a team leaves, Team::stop_at in
  // rnn/layer_team.h) is `steps` or less: the teammate may have left without publishing.
  Outcome await(int member, index_t steps, const std::atomic<index_t>& stop_at,
                std::chrono::nanoseconds patience);
  // await's first few hundred spins, with no clock read (a balanced pair meets within them):
  // kPending when they were not enough.
  Outcome await_briefly(int member, index_t steps, const std::atomic<index_t>& stop_at);

 private:
  static constexpr index_t kSwitchBit = index_t{1} << 62;
  Outcome look(int member, index_t steps, const std::atomic<index_t>& stop_at) const;
  struct alignas(64) Count {
    std::atomic<index_t> value{0};
  };
  Count done_[2];
  alignas(64) std::atomic<bool> asked_{false};  // written at most once: read from cache a step
};

// When a member of a team should go alone: when this wait is much longer than its own work for
// the step (a teammate descheduled for a time slice), or when its waiting in the region adds up to
// three times its work (teammates descheduled often, briefly: on 2 cores beside 2 busy processes a
// step took 10x its time in 90 us waits). Neither happens to a team that has its cores (waits
// there are a fraction of the work, even for the smallest steps that get two threads).
class Patience {
 public:
  using Clock = std::chrono::steady_clock;
  using Time = Clock::time_point;
  // Starts timing this member's work for the step.
  void working(Time now = Clock::now()) { since_ = now; }
  // Before arrive(): the patience for this wait (zero: ask to go alone at once).
  std::chrono::nanoseconds before_wait(Time now = Clock::now());
  // After arrive() returned.
  void after_wait(Time now = Clock::now()) { waited_ += now - arrived_; }

 private:
  Time since_ = Clock::now(), arrived_;
  std::chrono::nanoseconds worked_{0}, waited_{0};
};

// Memory of a busy machine across calls: after a region went solo (or its master waited for
// its teammates far longer than it worked), the next regions run on one thread; their number
// doubles each time a trial team is slowed again (up to kMaxBackoff) and resets when one is not.
namespace contention {
inline constexpr int kMaxBackoff = 1024;
// The team a region should ask for (1 while backing off).
int team_for_region(int wanted);
// What happened in such a region.
void record(bool went_solo);
struct State {
  int skip, backoff;  // regions still to run alone; how many the next solo skips
};
State state();
}  // namespace contention

}  // namespace rnnfast
