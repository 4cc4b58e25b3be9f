// Regions get whatever team OpenMP grants: a layer run from inside someone else's parallel region
// (nested, or with nesting enabled), or with more threads asked than cores, gives the same bits
// as one thread. Built by CMake (-DRNNFAST_BUILD_TESTS=ON) and run by tests/test_reliability.py.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "layer.h"

using namespace rnnfast;

namespace {

struct Case {
  Cell cell;
  index_t steps, batch, input, hidden;
};

// Forward (training) then backward; every output concatenated.
std::vector<float> run(const Case& c) {
  const index_t g = gate_count(c.cell), gh = g * c.hidden, bh = c.batch * c.hidden;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 0.3f);
  auto random = [&](index_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& e : v) e = nd(rng);
    return v;
  };
  const auto x = random(c.steps * c.batch * c.input), w_ih = random(gh * c.input);
  const auto w_hh = random(gh * c.hidden), b_ih = random(gh), b_hh = random(gh);
  const auto h0 = random(bh), c0 = random(bh), dy = random(c.steps * bh);
  std::vector<int64_t> lengths(static_cast<size_t>(c.batch));
  for (index_t b = 0; b < c.batch; ++b) lengths[b] = c.steps - b % 3;
  std::vector<float> y(c.steps * bh), h_n(bh), c_n(bh), gates(c.steps * c.batch * gh);
  std::vector<float> hs((c.steps + 1) * bh), cs((c.steps + 1) * bh), extra(c.steps * bh);
  LayerForward<float> f{};
  f.cell = c.cell;
  f.steps = c.steps;
  f.batch = c.batch;
  f.input = c.input;
  f.hidden = c.hidden;
  f.x = x.data();
  f.w_ih = w_ih.data();
  f.w_hh = w_hh.data();
  f.b_ih = b_ih.data();
  f.b_hh = b_hh.data();
  f.h0 = h0.data();
  f.c0 = c0.data();
  f.lengths = lengths.data();
  f.y = y.data();
  f.ldy = c.hidden;
  f.h_n = h_n.data();
  f.c_n = c_n.data();
  f.gates = gates.data();
  f.hs = hs.data();
  f.cs = cs.data();
  f.extra = extra.data();
  layer_forward(f);
  std::vector<float> dx(c.steps * c.batch * c.input), dh0(bh), dc0(bh);
  std::vector<float> dw_ih(gh * c.input), dw_hh(gh * c.hidden), db_ih(gh), db_hh(gh);
  LayerBackward<float> b{};
  b.cell = c.cell;
  b.steps = c.steps;
  b.batch = c.batch;
  b.input = c.input;
  b.hidden = c.hidden;
  b.x = x.data();
  b.w_ih = w_ih.data();
  b.w_hh = w_hh.data();
  b.lengths = lengths.data();
  b.gates = gates.data();
  b.hs = hs.data();
  b.cs = cs.data();
  b.extra = extra.data();
  b.dy = dy.data();
  b.ldy = c.hidden;
  b.dx = dx.data();
  b.dh0 = dh0.data();
  b.dc0 = dc0.data();
  b.dw_ih = dw_ih.data();
  b.dw_hh = dw_hh.data();
  b.db_ih = db_ih.data();
  b.db_hh = db_hh.data();
  layer_backward(b);
  std::vector<float> all;
  for (const auto* v : {&y, &h_n, &c_n, &dx, &dh0, &dc0, &dw_ih, &dw_hh, &db_ih, &db_hh})
    all.insert(all.end(), v->begin(), v->end());
  return all;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

int main() {
  int failures = 0;
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
        check("the other caller thread", per_thread[1]);
      }
      omp_set_max_active_levels(1);
    }
  }
  std::printf(failures ? "check_threads: %d failures\n" : "check_threads: ok\n", failures);
  return failures ? 1 : 0;
}
