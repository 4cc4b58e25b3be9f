// The kernels the dispatcher picks on this target (NEON on arm64), checked against plain loops
// and libm: GEMM in both layouts across tile edges, and the activations' error bounds. Built and
// run by run_arm64.sh under qemu, so the NEON path is tested on an x86 machine too.
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/table.h"
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
int main() {
  std::printf("isa: %s\n", isa_name(active_isa()));
  int bad = check<float>("f32") + check<double>("f64");
  std::printf(bad ? "FAILED\n" : "ok\n");
  return bad != 0;
}
