// Regions get whatever team OpenMP grants: a stack run from inside someone else's parallel region
// (nested, or with nesting enabled), or with more threads asked than cores, gives the same bits
// as one thread. Built by CMake (-DRNNFAST_BUILD_TESTS=ON) and run by
// tests/engine/test_reliability.py.
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "rnn/stack.h"

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

using namespace rnnfast;

namespace {

struct Case {
  Cell cell;
  index_t steps, batch, input, hidden;
};

// A 2-layer bidirectional stack: forward (training) then backward; every output concatenated.
std::vector<float> run(const Case& c) {
  const StackSpec spec{c.cell, c.input, c.hidden, 2, 2, true};
  const index_t g = cell_info(c.cell).gates, gh = g * c.hidden, bh = c.batch * c.hidden;
  const index_t states = spec.count() * bh, width = 2 * c.hidden;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 0.3f);
  auto random = [&](index_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& e : v) e = nd(rng);
    return v;
  };
  std::vector<std::vector<float>> weights, grads;
  StackParams<float> params;
  StackGrads<float> gr;
  for (index_t k = 0; k < spec.count(); ++k) {
    const index_t in = spec.layer_input(k / 2);
    for (index_t n : {gh * in, gh * c.hidden, gh, gh}) {
      weights.push_back(random(n));
      grads.emplace_back(static_cast<size_t>(n), 0.f);
    }
    const size_t w = weights.size() - 4;
    params.layers.push_back(
        {weights[w].data(), weights[w + 1].data(), weights[w + 2].data(), weights[w + 3].data()});
    gr.w_ih.push_back(grads[w].data());
    gr.w_hh.push_back(grads[w + 1].data());
    gr.b_ih.push_back(grads[w + 2].data());
    gr.b_hh.push_back(grads[w + 3].data());
  }
  const auto x = random(c.steps * c.batch * c.input), h0 = random(states), c0 = random(states);
  const auto dy = random(c.steps * c.batch * width);
  std::vector<int64_t> lengths(static_cast<size_t>(c.batch));
  for (index_t b = 0; b < c.batch; ++b) lengths[b] = c.steps - b % 3;
  std::vector<float> y(c.steps * c.batch * width), h_n(states), c_n(states);
  std::vector<float> dx(c.steps * c.batch * c.input), dh0(states), dc0(states);
  Stack<float> stack(spec);
  Tape<float> tape;
  stack.forward(params, 1, c.steps, c.batch, x.data(), nullptr, h0.data(), c0.data(),
                lengths.data(), y.data(), h_n.data(), c_n.data(), &tape);
  stack.backward(params, rnnfast::kNoCache, tape, dy.data(), nullptr, nullptr, dx.data(),
                 dh0.data(), dc0.data(), gr);
  std::vector<float> all;
  for (const auto* v : {&y, &h_n, &c_n, &dx, &dh0, &dc0})
    all.insert(all.end(), v->begin(), v->end());
  for (const auto& v : grads) all.insert(all.end(), v.begin(), v.end());
  return all;
}

// A teammate that stalls (as a descheduled thread does) makes the other go on alone: it gets
// kSolo, the stalled one kLeave at that same barrier, and nobody waits forever.
int check_solo() {
  StepBarrier barrier(2);
  std::atomic<int> solo_at{-1}, left_at{-1}, ready{0};
  auto member = [&](int id) {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();  // both start together
    for (int step = 0; step < 200; ++step) {
      if (id == 1 && step == 50) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto after = barrier.arrive(id, std::chrono::milliseconds(20));
      if (after == StepBarrier::After::kSolo) {
        solo_at = step;
        break;  // (would go on with every member's work)
      }
      if (after == StepBarrier::After::kLeave) {
        left_at = step;
        break;
      }
    }
    barrier.finish(id);
  };
  std::thread t0(member, 0), t1(member, 1);
  t0.join();
  t1.join();
  const bool ok = solo_at == 50 && left_at == 50 && barrier.went_solo();
  std::printf("%s: solo at step %d, left at step %d\n", ok ? "solo ok" : "FAIL solo",
              solo_at.load(), left_at.load());
  return ok ? 0 : 1;
}

// Counts and prints the failed expectations of one group of checks.
struct Expect {
  const char* group;
  int failures = 0;
  void operator()(bool ok, const char* what) {
    if (!ok) {
      std::printf("FAIL %s: %s\n", group, what);
      ++failures;
    }
  }
};

// Joins t0 and t1, or ends the process with a failure if they are not done within 20 s (a hang
// is what these checks are about).
void join_or_fail(std::thread& t0, std::thread& t1, const std::atomic<int>& done,
                  const char* what) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (done.load() < 2) {
    if (std::chrono::steady_clock::now() > until) {
      std::printf("FAIL %s: a member never finished\n", what);
      std::fflush(stdout);
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  t0.join();
  t1.join();
}

// PairFlags (a team of two meeting mid-step in rnn/layer_forward.cpp): a member that waits past
// its patience asks for the barrier, and both members leave the flags at the same meeting, then
// meet at a StepBarrier to the end; a stop decided by one member never leaves the other waiting.
int check_pair_flags() {
  Expect expect{"pair flags"};
  {
    PairFlags flags;
    StepBarrier barrier(2);
    const std::atomic<index_t> never{std::numeric_limits<index_t>::max()};
    std::atomic<int> from[2] = {-1, -1}, apart{0}, done{0};
    auto member = [&](int id) {
      bool by_flags = true;
      for (int step = 0; step < 200; ++step) {
        if (id == 1 && step == 50) std::this_thread::sleep_for(std::chrono::milliseconds(30));
        if (by_flags) {  // the meeting of this step
          const auto outcome = flags.await(id, step, never, std::chrono::milliseconds(1));
          if (outcome == PairFlags::Outcome::kSwitch) by_flags = false;
          if (outcome == PairFlags::Outcome::kStop) apart.fetch_add(1);
        }
        if (!by_flags) {
          if (from[id] < 0) from[id] = step;
          if (barrier.arrive(id, std::chrono::seconds(5)) != StepBarrier::After::kTogether)
            apart.fetch_add(1);
        }
        if (by_flags) by_flags = flags.publish(id, step + 1);
      }
      done.fetch_add(1);
    };
    std::thread t0(member, 0), t1(member, 1);
    join_or_fail(t0, t1, done, "pair flags switching");
    expect(from[0] == 51 && from[1] == 51, "the members did not switch at the same meeting");
    expect(apart == 0, "a meeting went solo or stopped");
    if (from[0] != 51 || from[1] != 51)
      std::printf("  (switched at %d and %d)\n", from[0].load(), from[1].load());
  }
  {
    PairFlags flags;
    std::atomic<index_t> stop_at{std::numeric_limits<index_t>::max()};
    std::atomic<int> done{0}, left_at[2] = {-1, -1};
    auto member = [&](int id) {
      for (int step = 0; step < 100000; ++step) {
        if (step >= stop_at.load()) {  // the top of an iteration (Team::stopping)
          left_at[id] = step;
          break;
        }
        if (id == 0 && step == 300) stop_at.store(301);  // member 0 is interrupted
        if (flags.await(id, step, stop_at, std::chrono::seconds(5)) == PairFlags::Outcome::kStop) {
          left_at[id] = step;
          break;
        }
        flags.publish(id, step + 1);
      }
      done.fetch_add(1);
    };
    std::thread t0(member, 0), t1(member, 1);
    join_or_fail(t0, t1, done, "pair flags stopping");
    expect(left_at[0] == 301 && left_at[1] >= 300 && left_at[1] <= 301,
           "the members did not leave at the stop");
  }
  if (!expect.failures) std::printf("pair flags ok\n");
  return expect.failures;
}

// The patience rules on a synthetic clock (real threads on a shared machine see pauses of their
// own): a balanced team's waits never run out of patience; a long wait does, at 10x the step's
// work (at least 1 ms); many short waits do once they add up to 3x the work and 1 ms.
int check_patience() {
  using namespace std::chrono;
  Expect expect{"patience"};
  const Patience::Time t0{};
  {  // balanced: 2 us of work, 0.3 us of waiting, 100000 steps
    Patience p;
    p.working(t0);
    auto t = t0;
    bool ran_out = false;
    for (int step = 0; step < 100000; ++step) {
      t += microseconds(2);
      const auto patience = p.before_wait(t);
      ran_out = ran_out || patience.count() == 0 || patience < milliseconds(1);
      t += nanoseconds(300);
      p.after_wait(t);
      p.working(t);
    }
    expect(!ran_out, "a balanced team lost patience");
  }
  {  // one long wait: the patience offered is 10x the work, at least 1 ms
    Patience p;
    p.working(t0);
    expect(p.before_wait(t0 + milliseconds(5)) == milliseconds(50) / 25,
           "patience is not 10x the work within its bounds");
    Patience q;
    q.working(t0);
    expect(q.before_wait(t0 + microseconds(10)) == milliseconds(1), "patience below 1 ms");
  }
  {  // many short waits: 10 us of work, 90 us waits: runs out once waits pass 3x work and 1 ms
    Patience p;
    p.working(t0);
    auto t = t0;
    int gave_up = -1;
    for (int step = 0; step < 100 && gave_up < 0; ++step) {
      t += microseconds(10);
      if (p.before_wait(t).count() == 0) gave_up = step;
      t += microseconds(90);
      p.after_wait(t);
      p.working(t);
    }
    expect(gave_up == 12, "many short waits did not run out of patience after ~1 ms of them");
    if (gave_up != 12) std::printf("  (gave up at step %d)\n", gave_up);
  }
  if (!expect.failures) std::printf("patience ok\n");
  return expect.failures;
}

// The rule by which a plain region teaches the busy-machine history, on a synthetic clock (real
// threads on a shared machine see pauses of their own): a master that waited for its team
// longer than twice its work and 0.5 ms makes the next regions run on one thread; a balanced
// region does not, and resets the backoff.
int check_region_learning() {
  using namespace std::chrono;
  Expect expect{"region learning"};
  auto drain = [] {
    while (contention::state().skip > 0) contention::team_for_region(2);
  };
  const steady_clock::time_point t0{};
  contention::record(false);
  drain();
  detail::learn_from_region(t0, t0 + microseconds(300), t0 + microseconds(320));
  expect(contention::state().skip == 0, "a balanced region counted as held up");
  detail::learn_from_region(t0, t0 + microseconds(20), t0 + microseconds(400));
  expect(contention::state().skip == 0, "a short wait (under 0.5 ms) counted as held up");
  detail::learn_from_region(t0, t0 + milliseconds(4), t0 + milliseconds(9));
  expect(contention::state().skip == 0, "a wait shorter than twice the work counted");
  detail::learn_from_region(t0, t0 + microseconds(20), t0 + milliseconds(5));
  expect(contention::state().skip > 0, "a held-up region taught nothing");
  expect(contention::team_for_region(2) == 1, "the region after a held-up one got a team");
  drain();
  contention::record(false);
  if (!expect.failures) std::printf("region learning ok\n");
  return expect.failures;
}

// AwayFromCpu moves the thread off its CPU and gives back its affinity; with one CPU allowed it
// stays. (Linux only; elsewhere it does nothing.)
int check_away_from_cpu() {
  Expect expect{"away from cpu"};
#if defined(__linux__)
  cpu_set_t before;
  if (pthread_getaffinity_np(pthread_self(), sizeof before, &before) != 0) return 0;
  const int cpu = current_cpu();
  {
    const AwayFromCpu away(cpu);
    if (CPU_COUNT(&before) > 1) {
      expect(away.moved() && current_cpu() != cpu, "the thread stayed on the CPU it was to leave");
    } else {
      expect(!away.moved(), "the only CPU allowed was taken away");
    }
    if (away.moved()) {  // the thread can no longer be on `cpu`
      const AwayFromCpu again(cpu);
      expect(!again.moved(), "moved off a CPU it was not on");
    }
  }
  cpu_set_t after;
  pthread_getaffinity_np(pthread_self(), sizeof after, &after);
  expect(CPU_EQUAL(&before, &after), "the affinity was not given back");
  if (CPU_COUNT(&before) > 1) {  // one CPU allowed: nothing to move to
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(current_cpu(), &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    {
      const AwayFromCpu away(current_cpu());
      expect(!away.moved(), "left its only CPU");
    }
    pthread_setaffinity_np(pthread_self(), sizeof before, &before);
  }
#endif
  if (!expect.failures) std::printf("away from cpu ok\n");
  return expect.failures;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

int main() {
  int failures = check_solo() + check_pair_flags() + check_patience() + check_region_learning() +
                 check_away_from_cpu();
  const Cell cells[] = {Cell::RnnTanh, Cell::Lstm, Cell::Gru, Cell::GruResetBefore};
  for (Cell cell : cells) {
    // Hidden units split among threads (small batch), and rows split (large batch).
    for (Case c : {Case{cell, 9, 2, 24, 160}, Case{cell, 7, 48, 16, 64}}) {
      set_num_threads(1);
      const auto want = run(c);
      auto check = [&](const char* what, const std::vector<float>& got) {
        if (!same(want, got)) {
          std::printf("FAIL cell %d B=%ld: %s differs from one thread\n", static_cast<int>(cell),
                      static_cast<long>(c.batch), what);
          ++failures;
        }
      };
      set_num_threads(2);
      check("two threads", run(c));
      set_num_threads(64);
      check("64 threads", run(c));
      for (int levels : {1, 2}) {  // nesting disabled (the default) and enabled
        omp_set_max_active_levels(levels);
        std::vector<std::vector<float>> per_thread(2);
#pragma omp parallel num_threads(2)
        per_thread[static_cast<size_t>(omp_get_thread_num())] = run(c);
        check(levels == 1 ? "called from a parallel region" : "called with nesting enabled",
              per_thread[0]);
        // (A team of one, under OMP_THREAD_LIMIT=1, has no other caller.)
        if (!per_thread[1].empty()) check("the other caller thread", per_thread[1]);
      }
      omp_set_max_active_levels(1);
    }
  }
  std::printf(failures ? "check_threads: %d failures\n" : "check_threads: ok\n", failures);
  return failures ? 1 : 0;
}
