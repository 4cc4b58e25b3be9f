#include "runtime/threads.h"

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define RNNFAST_HAVE_PTHREAD 1
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define RNNFAST_HAVE_FUTEX 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rnnfast {
namespace {

// A master that waits this long for its teammates at the end of a region (and longer than
// twice its own work) saw a teammate lose its core.
constexpr std::chrono::microseconds kSlowTeamWait{500};

// A pause after which a small call runs alone. libgomp's threads spin GOMP_SPINCOUNT times
// after a region (30000 as rnnfast loads libgomp, src/rnnfast/_openmp.py; 300000 as torch does),
// then sleep. Measured on a 2-vCPU VM with 30000: a region 100 us after the last started its
// thread in 1.4 us, 300 us after in 32 us, 1 ms after in 69 us, 5 ms after in 385 us. Training
// loops call the engine every few hundred microseconds (torch's own work between): a shorter
// pause here ran their small steps alone, where the team, awake or nearly, was faster.
constexpr std::chrono::microseconds kTeamAwakeFor{1000};
// Calls below this many multiply-adds do not wake a sleeping team: one thread does them in
// 0.1-1 ms (B = 1 LSTM H = 128 T = 100 is 13M: 0.57 ms alone after a 5 ms pause, 0.56 on two).
constexpr index_t kMinWorkToWakeTeam = index_t{16} << 20;

// This thread's calls and team (libgomp's pools are per calling thread): when the last call or
// team region ended, and whether the call under way keeps its regions to this thread.
thread_local std::chrono::steady_clock::time_point t_last_active{};
thread_local int t_call_cap = 0;                // 0: none; 1: this call runs alone
thread_local bool t_small_calls_alone = false;  // set_small_calls_alone
thread_local int t_pool = 1;  // the largest team libgomp has started for this thread

int default_num_threads() {
#ifdef RNNFAST_HAVE_OPENMP
  return std::clamp(omp_get_max_threads(), 1, kMaxThreads);  // honours OMP_NUM_THREADS
#else
  return 1;
#endif
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}

// The largest team known to start (0: none checked yet); teams are capped by it.
std::atomic<int> g_startable{0};
std::mutex g_check_mutex;

// Set once a team of more than one thread has run; a child forked after that runs alone.
std::atomic<bool> g_team_started{false};
std::atomic<bool> g_forked_child{false};

#ifdef RNNFAST_HAVE_PTHREAD
void on_fork_child() {
  if (g_team_started.load(std::memory_order_relaxed)) g_forked_child.store(true);
}

const bool g_atfork_registered = [] {
  return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;
}();

// The stack size libgomp gives its threads: OMP_STACKSIZE / GOMP_STACKSIZE ("size[B|K|M|G]",
// kilobytes by default), else the platform default (0 here).
size_t openmp_stack_size() {
  for (const char* name : {"OMP_STACKSIZE", "GOMP_STACKSIZE"}) {
    const char* text = std::getenv(name);
    if (!text || !*text) continue;
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    while (end && std::isspace(static_cast<unsigned char>(*end))) ++end;
    const char unit = end && *end ? static_cast<char>(std::toupper(*end)) : 'K';
    const int shift = unit == 'B' ? 0 : unit == 'M' ? 20 : unit == 'G' ? 30 : 10;
    return static_cast<size_t>(value) << shift;
  }
  return 0;
}

void* idle(void*) {
  return nullptr;
}

// Starts n - 1 threads as libgomp would (same stack size) and joins them: libgomp exits the
// process when it cannot create a thread, so a team is tried here first. Returns how many
// threads (the caller included) could run, and the error of the first failure.
int try_start(int n, int* error) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (const size_t stack = openmp_stack_size()) pthread_attr_setstacksize(&attr, stack);
  std::vector<pthread_t> started;
  *error = 0;
  for (int i = 1; i < n && *error == 0; ++i) {
    pthread_t t;
    *error = pthread_create(&t, &attr, &idle, nullptr);
    if (*error == 0) started.push_back(t);
  }
  for (pthread_t t : started) pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
  return static_cast<int>(started.size()) + 1;
}
#else
int try_start(int n, int* error) {
  *error = 0;
  return n;
}
#endif

// The largest team up to n that can start; checks once per new high-water mark.
int startable(int n, int* error) {
  *error = 0;
  if (n <= g_startable.load()) return n;
  const std::lock_guard<std::mutex> lock(g_check_mutex);
  const int known = g_startable.load();
  if (n <= known) return n;
  const int got = try_start(n, error);
  if (got > known) g_startable.store(got);
  return std::min(n, got);
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) {
    throw std::invalid_argument("n: expected a number of threads in [1, " +
                                std::to_string(kMaxThreads) + "], got " + std::to_string(n));
  }
  int error = 0;
  const int got = startable(n, &error);
  if (got < n) {
    throw std::runtime_error("n: only " + std::to_string(got) + " of " + std::to_string(n) +
                             " threads could be started here (" + std::strerror(error) +
                             "); the thread count stays " + std::to_string(get_num_threads()));
  }
  thread_setting().store(n);
}

int get_num_threads() {
  return thread_setting().load();
}

bool in_forked_child() {
  return g_forked_child.load(std::memory_order_relaxed);
}

int usable_threads() {
  if (in_forked_child()) return 1;
  int error = 0;
  return startable(get_num_threads(), &error);
}

namespace detail {

int team_for(int wanted) {
  if (wanted <= 1 || in_forked_child() || t_call_cap == 1) return 1;
#ifdef RNNFAST_HAVE_OPENMP
  if (omp_in_parallel()) return 1;  // inside someone's team: no nested teams of our own
#endif
  const int n = contention::team_for_region(std::min(wanted, usable_threads()));
  if (n > 1) g_team_started.store(true, std::memory_order_relaxed);
  return n;
}

bool team_is_new(int n) {
  if (n <= t_pool) return false;
  t_pool = n;
  return true;
}

void team_ended() {
  t_last_active = std::chrono::steady_clock::now();
}

void learn_from_region(std::chrono::steady_clock::time_point start,
                       std::chrono::steady_clock::time_point master_done,
                       std::chrono::steady_clock::time_point end) {
  // A balanced team ends within a fraction of the work; a teammate kept off its core by another
  // process keeps the master waiting for a time slice (milliseconds).
  const auto work = master_done - start, wait = end - master_done;
  contention::record(wait > std::max<std::chrono::nanoseconds>(2 * work, kSlowTeamWait));
}

}  // namespace detail

bool always_team() {
  static const bool always = [] {
    const char* v = std::getenv("RNNFAST_ALWAYS_TEAM");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return always;
}

bool call_runs_alone(index_t macs) {
  if (always_team() || macs >= kMinWorkToWakeTeam || get_num_threads() <= 1) return false;
  if (t_small_calls_alone) return true;
  // Calls back to back (a loop) wake the team once and keep it awake: they use it.
  return std::chrono::steady_clock::now() - t_last_active > kTeamAwakeFor;
}

bool set_small_calls_alone(bool alone) {
  const bool previous = t_small_calls_alone;
  t_small_calls_alone = alone;
  return previous;
}

CallTeam::CallTeam(index_t macs) : capped_(false) {
  if (t_call_cap != 0 || !call_runs_alone(macs)) return;
  t_call_cap = 1;
  capped_ = true;
}

CallTeam::~CallTeam() {
  if (capped_) t_call_cap = 0;
  t_last_active = std::chrono::steady_clock::now();
}

// ---- StepBarrier ------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

// Waiting: spin (a balanced team meets within microseconds), then yield the core, then sleep.
constexpr auto kSpinFor = std::chrono::microseconds(20);
constexpr auto kYieldFor = std::chrono::microseconds(200);
// How long a single wait may last before going alone: ten times this member's own work for the
// step (a balanced team's members finish within a fraction of it), but at least kMinPatience
// (interrupts, page faults, a virtual machine's vCPU paused by its host: seen here past 100 us)
// and at most kMaxPatience (a scheduler's time slice).
constexpr auto kMinPatience = std::chrono::milliseconds(1);
constexpr auto kMaxPatience = std::chrono::milliseconds(2);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

void yield_core() {
#ifdef RNNFAST_HAVE_PTHREAD
  sched_yield();
#endif
}

// Sleeps while *word == expected, at most `timeout` (spurious wake-ups are fine).
void sleep_while(std::atomic<uint32_t>* word, uint32_t expected,
                 std::chrono::microseconds timeout) {
#ifdef RNNFAST_HAVE_FUTEX
  timespec ts{0, static_cast<long>(timeout.count()) * 1000};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr,
          0);
#else
  (void)word;
  (void)expected;
  (void)timeout;
  yield_core();
#endif
}

void wake_all(std::atomic<uint32_t>* word) {
#ifdef RNNFAST_HAVE_FUTEX
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr,
          nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace

StepBarrier::After StepBarrier::outcome(int member) const {
  const int soloist = soloist_.load(std::memory_order_acquire);
  if (soloist < 0) return After::kTogether;
  return soloist == member ? After::kSolo : After::kLeave;
}

void StepBarrier::ask_to_go_alone(int member) {
  requester_.store(member, std::memory_order_relaxed);
  uint64_t cur = state_.load(std::memory_order_relaxed);
  // Only while the step is still incomplete: the member that completes it reads the bit in the
  // same atomic it increments, so a request is either seen by it or refused here.
  while (!(cur & kSoloBit) && (cur & kCountMask) < static_cast<uint64_t>(team_)) {
    if (state_.compare_exchange_weak(cur, cur | kSoloBit, std::memory_order_acq_rel)) return;
  }
}

std::chrono::nanoseconds Patience::before_wait(Time now) {
  arrived_ = now;
  const auto work = arrived_ - since_;
  worked_ += work;
  if (waited_ > 3 * worked_ && waited_ > std::chrono::milliseconds(1)) return {};
  return std::clamp<std::chrono::nanoseconds>(10 * work, kMinPatience, kMaxPatience);
}

StepBarrier::After StepBarrier::arrive(int member, std::chrono::nanoseconds patience) {
  if (team_ <= 1) return After::kTogether;
  const uint32_t gen = generation_.load(std::memory_order_acquire);
  const uint64_t prev = state_.fetch_add(1, std::memory_order_acq_rel);
  if ((prev & kCountMask) + 1 == static_cast<uint64_t>(team_)) {  // the last to arrive
    if (prev & kSoloBit) soloist_.store(requester_.load(std::memory_order_relaxed));
    state_.store(0, std::memory_order_relaxed);  // nobody arrives again before the release
    generation_.fetch_add(1, std::memory_order_release);
    if (sleepers_.load(std::memory_order_acquire) > 0) wake_all(&generation_);
    return outcome(member);
  }
  if (patience.count() == 0) ask_to_go_alone(member);
  // A balanced team meets within a few hundred nanoseconds: spin without reading the clock.
  for (int spins = 0; spins < 256; ++spins) {
    if (generation_.load(std::memory_order_acquire) != gen) return outcome(member);
    cpu_relax();
  }
  const auto start = Clock::now();
  bool asked = patience.count() == 0;
  for (unsigned spins = 0;; ++spins) {
    if (generation_.load(std::memory_order_acquire) != gen) break;
    if (spins % 64 != 0) {
      cpu_relax();
      continue;
    }
    const auto waited = Clock::now() - start;
    if (waited < kSpinFor) continue;
    if (!asked && waited > patience) {
      ask_to_go_alone(member);
      asked = true;
    }
    if (waited < kYieldFor) {
      yield_core();
      continue;
    }
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    if (generation_.load(std::memory_order_acquire) == gen)
      sleep_while(&generation_, gen, std::chrono::microseconds(500));
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
  }
  return outcome(member);
}

bool PairFlags::publish(int member, index_t steps) {
  const bool switching = asked_.load(std::memory_order_relaxed);
  done_[member].value.store(switching ? steps | kSwitchBit : steps, std::memory_order_release);
  return !switching;
}

PairFlags::Outcome PairFlags::look(int member, index_t steps,
                                   const std::atomic<index_t>& stop_at) const {
  const index_t count = done_[1 - member].value.load(std::memory_order_acquire);
  // (After the acquire: a stop the teammate decided before publishing is seen here.)
  if (stop_at.load(std::memory_order_relaxed) <= steps) return Outcome::kStop;
  if ((count & ~kSwitchBit) < steps) return Outcome::kPending;
  return count & kSwitchBit ? Outcome::kSwitch : Outcome::kGo;
}

PairFlags::Outcome PairFlags::await_briefly(int member, index_t steps,
                                            const std::atomic<index_t>& stop_at) {
  for (int spins = 0; spins < 256; ++spins) {
    const Outcome outcome = look(member, steps, stop_at);
    if (outcome != Outcome::kPending) return outcome;
    cpu_relax();
  }
  return Outcome::kPending;
}

PairFlags::Outcome PairFlags::await(int member, index_t steps, const std::atomic<index_t>& stop_at,
                                    std::chrono::nanoseconds patience) {
  Clock::time_point start;
  for (unsigned spins = 0;; ++spins) {
    const Outcome outcome = look(member, steps, stop_at);
    if (outcome != Outcome::kPending) return outcome;
    if (spins % 64 != 0) {
      cpu_relax();
      continue;
    }
    const auto now = Clock::now();
    if (spins == 0) start = now;
    const auto waited = now - start;
    if (waited > patience && !asked_.load(std::memory_order_relaxed))
      asked_.store(true, std::memory_order_relaxed);
    if (waited > kSpinFor) yield_core();
  }
}

void StepBarrier::finish(int member, void (*while_waiting)(void*), void* context) {
  const int soloist = soloist_.load(std::memory_order_acquire);
  if (soloist < 0) return;
  if (soloist == member) {
    finished_.store(1, std::memory_order_release);
    wake_all(&finished_);
    return;
  }
  while (finished_.load(std::memory_order_acquire) == 0) {
    sleep_while(&finished_, 0, std::chrono::microseconds(1000));
    if (while_waiting) while_waiting(context);
  }
}

// ---- contention history ---------------------------------------------------------------------

int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

AwayFromCpu::AwayFromCpu(int cpu) {
#if defined(__linux__)
  static_assert(sizeof(cpu_set_t) <= sizeof(saved_), "AwayFromCpu::saved_ holds a cpu_set_t");
  if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu) return;
  auto* saved = reinterpret_cast<cpu_set_t*>(saved_);
  if (pthread_getaffinity_np(pthread_self(), sizeof(cpu_set_t), saved) != 0) return;
  cpu_set_t away = *saved;
  CPU_CLR(cpu, &away);
  if (CPU_COUNT(&away) == 0) return;
  moved_ = pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), &away) == 0;
#else
  (void)cpu;
  (void)saved_;
#endif
}

AwayFromCpu::~AwayFromCpu() {
#if defined(__linux__)
  if (moved_)
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t),
                           reinterpret_cast<const cpu_set_t*>(saved_));
#endif
}

namespace contention {
namespace {
std::atomic<int> g_skip{0};     // step-synchronised regions still to run on one thread
std::atomic<int> g_backoff{0};  // how many to skip after the next solo
}  // namespace

int team_for_region(int wanted) {
  if (wanted <= 1) return 1;
  int skip = g_skip.load(std::memory_order_relaxed);
  while (skip > 0) {
    if (g_skip.compare_exchange_weak(skip, skip - 1, std::memory_order_relaxed)) return 1;
  }
  return wanted;
}

State state() {
  return {g_skip.load(std::memory_order_relaxed), g_backoff.load(std::memory_order_relaxed)};
}

void record(bool went_solo) {
  if (!went_solo) {
    g_backoff.store(0, std::memory_order_relaxed);
    return;
  }
  const int next = std::clamp(2 * g_backoff.load(std::memory_order_relaxed), 4, kMaxBackoff);
  g_backoff.store(next, std::memory_order_relaxed);
  g_skip.store(next, std::memory_order_relaxed);
}

}  // namespace contention

bool have_openmp() {
#ifdef RNNFAST_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace rnnfast
