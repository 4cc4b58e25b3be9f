#include "ops/optim.h"

#include <cmath>

namespace rnnfast {
namespace {

// Elementwise loops in chunks big enough to amortise a thread's start.
template <typename Body>
void for_each_element(index_t n, const Body& body) {
  parallel_for(n, 1 << 16, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) body(i);
  });
}

}  // namespace

template <typename T>
void adagrad_update(index_t n, T* p, const T* g, T* sum, const OptimizerHyper& h) {
  const T lr = T(h.lr), eps = T(h.eps), wd = T(h.weight_decay);
  for_each_element(n, [&](index_t i) {
    const T d = wd != T(0) ? g[i] + wd * p[i] : g[i];
    sum[i] += d * d;
    const T denom = h.eps_inside_sqrt ? std::sqrt(sum[i] + eps) : std::sqrt(sum[i]) + eps;
    p[i] -= lr * d / denom;
  });
}

template <typename T>
void rmsprop_update(index_t n, T* p, const T* g, T* sq, T* ga, T* buf, const OptimizerHyper& h) {
  const T lr = T(h.lr), a = T(h.alpha), eps = T(h.eps), wd = T(h.weight_decay), mu = T(h.momentum);
  for_each_element(n, [&](index_t i) {
    const T d = wd != T(0) ? g[i] + wd * p[i] : g[i];
    sq[i] = a * sq[i] + (T(1) - a) * d * d;
    T avg = sq[i];
    if (h.centered) {
      ga[i] = a * ga[i] + (T(1) - a) * d;
      avg -= ga[i] * ga[i];
    }
    const T denom = std::sqrt(avg) + eps;
    if (mu != T(0)) {
      buf[i] = mu * buf[i] + d / denom;
      p[i] -= lr * buf[i];
    } else {
      p[i] -= lr * d / denom;
    }
  });
}

template <typename T>
void adam_update(index_t n, T* p, const T* g, T* m, T* v, const OptimizerHyper& h) {
  const T b1 = T(h.beta1), b2 = T(h.beta2), eps = T(h.eps), wd = T(h.weight_decay);
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const T step_size = T(h.lr / bc1), sqrt_bc2 = T(std::sqrt(bc2));
  const T decay = T(1.0 - h.lr * h.weight_decay);
  for_each_element(n, [&](index_t i) {
    T d = g[i];
    if (h.decoupled) {
      p[i] *= decay;
    } else if (wd != T(0)) {
      d += wd * p[i];
    }
    m[i] = b1 * m[i] + (T(1) - b1) * d;
    v[i] = b2 * v[i] + (T(1) - b2) * d * d;
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
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
