// The kernels the dispatcher picks on this target (NEON on arm64), checked against plain loops
// and libm: GEMM in both layouts across tile edges, rows_dot, rows_combine, and the activations'
// error bounds. Then `dump FILE` runs a 2-layer bidirectional stack of every cell (forward and
// backward, with lengths, in float64) and writes every output, and `compare A B` checks two
// dumps agree: CMake's tests compare the best ISA with the portable kernels
// (RNNFAST_ISA=generic), which the Python suite checks against NumPy. Run under qemu by
// tests/cross/run_arm64.sh, so the NEON path is tested on an x86 machine too.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/table.h"
#include "rnn/packing.h"
#include "rnn/stack.h"
using namespace rnnfast;
using namespace rnnfast::kernels;
template <typename T>
int check(const char* name) {
  int bad = 0;
  std::mt19937 rng(1);
  std::normal_distribution<double> nd;
  for (auto [m, n, k] :
       {std::array<index_t, 3>{1, 513, 128}, {7, 33, 257}, {73, 300, 600}, {5, 17, 3}}) {
    for (Trans tb : {Trans::No, Trans::Yes}) {
      std::vector<T> a(m * k), b(k * n), c(m * n);
      for (auto& v : a) v = T(nd(rng));
      for (auto& v : b) v = T(nd(rng));
      PackedB<T> pb(tb, k, n, b.data(), tb == Trans::No ? n : k);
      gemm(Trans::No, m, n, k, a.data(), k, pb, false, c.data(), n);
      double err = 0;
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
          double s = 0;
          for (index_t q = 0; q < k; ++q)
            s += double(a[i * k + q]) * double(tb == Trans::No ? b[q * n + j] : b[j * k + q]);
          err = std::max(err, std::fabs(s - double(c[i * n + j])) / std::sqrt(double(k)));
        }
      const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
      if (err > tol) {
        std::printf("%s gemm %ldx%ldx%ld err %g\n", name, m, n, k, err);
        ++bad;
      }
    }
  }
  const auto& kt = active_kernels<T>();
  // rows_dot (the direct step's product) across vector tails, row groups and several vectors.
  for (auto [rows, depth, count] :
       {std::array<index_t, 3>{1, 1, 1}, {7, 33, 3}, {12, 128, 1}, {5, 17, 4}, {9, 300, 2}}) {
    const index_t ldw = depth + 3, ldx = depth + 1, ldy = rows + 2;
    std::vector<T> w(rows * ldw), xs(count * ldx), ys(count * ldy, T(-7));
    for (auto& v : w) v = T(nd(rng));
    for (auto& v : xs) v = T(nd(rng));
    kt.rows_dot(rows, depth, w.data(), ldw, xs.data(), ldx, count, ys.data(), ldy);
    double err = 0;
    for (index_t b = 0; b < count; ++b) {
      for (index_t r = 0; r < rows; ++r) {
        double s = 0;
        for (index_t q = 0; q < depth; ++q) s += double(w[r * ldw + q]) * double(xs[b * ldx + q]);
        err = std::max(err, std::fabs(s - double(ys[b * ldy + r])) / std::sqrt(double(depth)));
      }
      for (index_t r = rows; r < ldy; ++r) err += ys[b * ldy + r] != T(-7);  // nothing else written
    }
    if (err > (sizeof(T) == 4 ? 1e-5 : 1e-12)) {
      std::printf("%s rows_dot %ldx%ldx%ld err %g\n", name, rows, depth, count, err);
      ++bad;
    }
  }
  // Each row of rows_dot has the same bits whether it falls in a group of four rows and four
  // vectors (sums folded by lane_sums), of four rows, or alone: a thread's share of the rows or
  // the batch never changes a value.
  for (auto [rows, depth, count] :
       {std::array<index_t, 3>{37, 33, 1}, {37, 128, 3}, {21, 300, 6}, {19, 530, 2}, {9, 64, 8}}) {
    const index_t ldw = depth + 5, ldx = depth + 2;
    std::vector<T> w(rows * ldw), xs(count * ldx), ys(count * rows), one(count);
    for (auto& v : w) v = T(nd(rng));
    for (auto& v : xs) v = T(nd(rng));
    kt.rows_dot(rows, depth, w.data(), ldw, xs.data(), ldx, count, ys.data(), rows);
    int differ = 0;
    for (index_t r = 0; r < rows; ++r) {
      kt.rows_dot(1, depth, w.data() + r * ldw, ldw, xs.data(), ldx, count, one.data(), 1);
      for (index_t b = 0; b < count; ++b)
        differ += std::memcmp(&one[b], &ys[b * rows + r], sizeof(T)) != 0;
    }
    if (differ) {
      std::printf("%s rows_dot %ldx%ldx%ld: %d values differ from one-row calls\n", name, rows,
                  depth, count, differ);
      ++bad;
    }
  }
  // rows_combine (the direct step's W^T dG and outer products): row blocks of four and their
  // remainder, column tails, both strides of a, accumulating or not; nothing else written.
  for (auto [rows, depth, cols] :
       {std::array<index_t, 3>{1, 1, 1}, {4, 7, 64}, {9, 33, 70}, {13, 2, 5}, {3, 300, 129}}) {
    for (bool accumulate : {false, true}) {
      const index_t a_rs = 1, a_ks = rows + 2, ldm = cols + 3, ldy = cols + 5;
      std::vector<T> a(depth * a_ks), mm(depth * ldm), ys(rows * ldy), before;
      for (auto& v : a) v = T(nd(rng));
      for (auto& v : mm) v = T(nd(rng));
      for (auto& v : ys) v = T(nd(rng));
      before = ys;
      kt.rows_combine(rows, depth, cols, a.data(), a_rs, a_ks, mm.data(), ldm, ys.data(), ldy,
                      accumulate);
      double err = 0;
      for (index_t i = 0; i < rows; ++i) {
        for (index_t j = 0; j < cols; ++j) {
          double s = accumulate ? double(before[i * ldy + j]) : 0.0;
          for (index_t q = 0; q < depth; ++q)
            s += double(a[i * a_rs + q * a_ks]) * double(mm[q * ldm + j]);
          err = std::max(err, std::fabs(s - double(ys[i * ldy + j])) / std::sqrt(double(depth)));
        }
        for (index_t j = cols; j < ldy; ++j) err += ys[i * ldy + j] != before[i * ldy + j];
      }
      if (err > (sizeof(T) == 4 ? 1e-5 : 1e-12)) {
        std::printf("%s rows_combine %ldx%ldx%ld%s err %g\n", name, rows, depth, cols,
                    accumulate ? " accumulate" : "", err);
        ++bad;
      }
    }
  }
  std::vector<T> x, y;
  for (double v = -110; v <= 100; v += 0.0137) x.push_back(T(v));
  for (double v = -1; v <= 1; v += 1e-4) x.push_back(T(v));
  y.resize(x.size());
  struct Fn {
    const char* n;
    void (*f)(index_t, const T*, T*);
    double (*ref)(double);
    double ulps;
  };
  Fn fns[] = {{"exp", kt.exp, [](double v) { return std::exp(v); }, 2},
              {"tanh", kt.tanh, [](double v) { return std::tanh(v); }, 4},
              {"sigmoid", kt.sigmoid, [](double v) { return 1 / (1 + std::exp(-v)); }, 4}};
  for (auto& f : fns) {
    f.f(index_t(x.size()), x.data(), y.data());
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double r = f.ref(double(x[i]));
      if (!(std::fabs(r) >= double(std::numeric_limits<T>::min())) ||
          r > double(std::numeric_limits<T>::max()))
        continue;
      const double ulp = double(
          std::nextafter(T(std::fabs(r)), std::numeric_limits<T>::infinity()) - T(std::fabs(r)));
      worst = std::max(worst, std::fabs(double(y[i]) - r) / ulp);
    }
    if (worst > f.ulps) ++bad;
    std::printf("%s %s: worst %.2f ulp (bound %.0f)\n", name, f.n, worst, f.ulps);
  }
  return bad;
}
// Every output of a stack of `cell`: y, final states, dx, initial-state and weight gradients.
std::vector<double> run_stack(Cell cell) {
  const index_t steps = 7, batch = 5, input = 6, hidden = 21;
  const StackSpec spec{cell, input, hidden, 2, 2, true};
  const index_t gh = cell_info(cell).gates * hidden, states = spec.count() * batch * hidden;
  std::mt19937 rng(static_cast<unsigned>(cell) + 3);
  std::normal_distribution<double> nd(0.0, 0.4);
  auto random = [&](index_t n) {
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& e : v) e = nd(rng);
    return v;
  };
  std::vector<std::vector<double>> w, g;
  StackParams<double> params;
  StackGrads<double> grads;
  for (index_t k = 0; k < spec.count(); ++k) {
    for (index_t n : {gh * spec.layer_input(k / 2), gh * hidden, gh, gh}) {
      w.push_back(random(n));
      g.emplace_back(static_cast<size_t>(n), 0.0);
    }
    const size_t i = w.size() - 4;
    params.layers.push_back({w[i].data(), w[i + 1].data(), w[i + 2].data(), w[i + 3].data()});
    grads.w_ih.push_back(g[i].data());
    grads.w_hh.push_back(g[i + 1].data());
    grads.b_ih.push_back(g[i + 2].data());
    grads.b_hh.push_back(g[i + 3].data());
  }
  const auto x = random(steps * batch * input), dy = random(steps * batch * 2 * hidden);
  const auto h0 = random(states), c0 = random(states);
  const std::vector<int64_t> lengths = {7, 3, 6, 1, 7};
  std::vector<double> y(dy.size()), h_n(states), c_n(states), dx(x.size()), dh0(states),
      dc0(states);
  Stack<double> stack(spec);
  Tape<double> tape;
  stack.forward(params, 0, steps, batch, x.data(), nullptr, h0.data(), c0.data(), lengths.data(),
                y.data(), h_n.data(), c_n.data(), &tape);
  stack.backward(params, rnnfast::kNoCache, tape, dy.data(), nullptr, nullptr, dx.data(),
                 dh0.data(), dc0.data(), grads);
  std::vector<double> all;
  for (const auto* v : {&y, &h_n, &c_n, &dx, &dh0, &dc0})
    all.insert(all.end(), v->begin(), v->end());
  for (const auto& v : g) all.insert(all.end(), v.begin(), v.end());
  return all;
}

int dump(const char* path) {
  std::vector<double> all;
  for (Cell cell : kCells) {
    const auto v = run_stack(cell);
    all.insert(all.end(), v.begin(), v.end());
  }
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(all.data()),
             static_cast<std::streamsize>(all.size() * sizeof(double)));
  std::printf("isa %s: %zu stack outputs written to %s\n", isa_name(active_isa()), all.size(),
              path);
  return 0;
}

std::vector<double> read_dump(const char* path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  std::vector<double> v(static_cast<size_t>(f.tellg()) / sizeof(double));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()),
         static_cast<std::streamsize>(v.size() * sizeof(double)));
  return v;
}

// Two ISAs round differently (fused multiply-adds, the activations' last bits): float64 results
// agree to about 1e-13 of their scale.
int compare(const char* a_path, const char* b_path) {
  const auto a = read_dump(a_path), b = read_dump(b_path);
  if (a.empty() || a.size() != b.size()) {
    std::printf("FAILED: dumps of %zu and %zu values\n", a.size(), b.size());
    return 1;
  }
  double scale = 0, err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(b[i]));
    err = std::max(err, std::fabs(a[i] - b[i]));
  }
  const bool ok = err <= 1e-11 * scale;
  std::printf("%zu values, max difference %.3g (scale %.3g): %s\n", a.size(), err, scale,
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

// Packed weights start every panel on a cache line (runtime/aligned.h: a tile or vector row across
// two lines cost a load twice), whatever the sizes, in float and in bf16 pairs.
int check_alignment() {
  int bad = 0;
  auto at_line = [&](const void* p, const char* what, index_t size) {
    if (reinterpret_cast<std::uintptr_t>(p) % 64 == 0) return;
    std::printf("%s (size %td) not on a cache line: %p\n", what, size, p);
    ++bad;
  };
  for (index_t hidden : {1, 17, 128, 300, 512}) {
    const index_t g = 4, in = hidden + 3;
    std::vector<float> w_ih(g * hidden * in, 0.5f), w_hh(g * hidden * hidden, 0.25f);
    std::vector<float> b(g * hidden, 0.1f);
    const LayerWeights<float> w{w_ih.data(), w_hh.data(), b.data(), b.data()};
    for (Precision pr : {Precision::Native, Precision::Bf16}) {
      const auto fwd = pack_forward(Cell::Lstm, in, hidden, 0, w, pr);
      const auto bwd = pack_backward(Cell::Lstm, in, hidden, 0, w, pr);
      for (const Panels<float>* p : {&fwd->rec, &bwd->rec}) {
        const index_t groups = p->stride ? (pr == Precision::Bf16 ? index_t(p->pairs.size())
                                                                  : index_t(p->data.size())) /
                                               p->stride
                                         : 0;
        for (index_t k = 0; k < groups; ++k)
          at_line(pr == Precision::Bf16 ? static_cast<const void*>(p->pairs.data() + k * p->stride)
                                        : static_cast<const void*>(p->data.data() + k * p->stride),
                  "a recurrent panel", hidden);
      }
      at_line(fwd->bias.data(), "the bias", hidden);
      const auto& b_ih = fwd->w_ih_t;
      for (index_t j = 0; j < ceil_div(b_ih.cols(), b_ih.kernels().nr); ++j)
        at_line(b_ih.bf16() ? static_cast<const void*>(b_ih.pair_panel(j))
                            : static_cast<const void*>(b_ih.panel(j)),
                "a panel of W_ih", hidden);
    }
  }
  std::printf("alignment of packed weights: %s\n", bad ? "FAILED" : "ok");
  return bad;
}

int main(int argc, char** argv) {
  std::printf("isa: %s\n", isa_name(active_isa()));
  int bad = check<float>("f32") + check<double>("f64") + check_alignment();
  std::printf(bad ? "FAILED\n" : "ok\n");
  if (bad) return 1;
  if (argc == 3 && std::strcmp(argv[1], "dump") == 0) return dump(argv[2]);
  if (argc == 4 && std::strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3]);
  return 0;
}
