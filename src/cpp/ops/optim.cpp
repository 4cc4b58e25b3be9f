#include "ops/optim.h"

#include <cmath>
#include <type_traits>

namespace rnnfast {
namespace {

// Elementwise loops in chunks big enough to amortise a thread's start.
template <typename Body>
void for_each_element(index_t n, const Body& body) {
  parallel_for(n, 1 << 16, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) body(i);
  });
}

// Calls f(std::bool_constant<flag>{}): each variant of an update is its own branch-free loop,
// which the compiler vectorises (a flag tested inside the loop keeps it scalar). Loop bodies
// capture by value: a scalar captured by reference might alias the arrays and is reloaded.
template <typename F>
void with_flag(bool flag, const F& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

}  // namespace

template <typename T>
void adagrad_update(index_t n, T* p, const T* g, T* sum, const OptimizerHyper& h) {
  const T lr = T(h.lr), eps = T(h.eps), wd = T(h.weight_decay);
  with_flag(wd != T(0), [&](auto decay) {
    with_flag(h.eps_inside_sqrt, [&](auto inside) {
      for_each_element(n, [=](index_t i) {
        const T d = decay ? g[i] + wd * p[i] : g[i];
        const T s = sum[i] + d * d;
        sum[i] = s;
        const T denom = inside ? std::sqrt(s + eps) : std::sqrt(s) + eps;
        p[i] -= lr * d / denom;
      });
    });
  });
}

template <typename T>
void rmsprop_update(index_t n, T* p, const T* g, T* sq, T* ga, T* buf, const OptimizerHyper& h) {
  const T lr = T(h.lr), a = T(h.alpha), eps = T(h.eps), wd = T(h.weight_decay), mu = T(h.momentum);
  with_flag(wd != T(0), [&](auto decay) {
    with_flag(h.centered, [&](auto centered) {
      with_flag(mu != T(0), [&](auto momentum) {
        for_each_element(n, [=](index_t i) {
          const T d = decay ? g[i] + wd * p[i] : g[i];
          const T s = a * sq[i] + (T(1) - a) * d * d;
          sq[i] = s;
          T avg = s;
          if (centered) {
            const T m = a * ga[i] + (T(1) - a) * d;
            ga[i] = m;
            avg -= m * m;
          }
          const T denom = std::sqrt(avg) + eps;
          if (momentum) {
            const T b = mu * buf[i] + d / denom;
            buf[i] = b;
            p[i] -= lr * b;
          } else {
            p[i] -= lr * d / denom;
          }
        });
      });
    });
  });
}

template <typename T>
void adam_update(index_t n, T* p, const T* g, T* m, T* v, const OptimizerHyper& h) {
  const T b1 = T(h.beta1), b2 = T(h.beta2), eps = T(h.eps), wd = T(h.weight_decay);
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const T step_size = T(h.lr / bc1), sqrt_bc2 = T(std::sqrt(bc2));
  const T decay = T(1.0 - h.lr * h.weight_decay);
  with_flag(h.decoupled, [&](auto decoupled) {
    with_flag(!h.decoupled && wd != T(0), [&](auto l2) {
      for_each_element(n, [=](index_t i) {
        T d = g[i];
        T w = p[i];
        if (decoupled) w *= decay;
        if (l2) d += wd * w;
        const T mi = b1 * m[i] + (T(1) - b1) * d;
        const T vi = b2 * v[i] + (T(1) - b2) * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = w - step_size * mi / (std::sqrt(vi) / sqrt_bc2 + eps);
      });
    });
  });
}

#define RNNFAST_INSTANTIATE(T)                                                               \
  template void adagrad_update<T>(index_t, T*, const T*, T*, const OptimizerHyper&);         \
  template void rmsprop_update<T>(index_t, T*, const T*, T*, T*, T*, const OptimizerHyper&); \
  template void adam_update<T>(index_t, T*, const T*, T*, T*, const OptimizerHyper&);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)
#undef RNNFAST_INSTANTIATE

}  // namespace rnnfast
