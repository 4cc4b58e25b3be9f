#include "ops/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/table.h"
#include "runtime/threads.h"

namespace rnnfast {
namespace {

// One row: its loss (NaN or inf as the formula gives them), grad written.
template <typename T>
double row_loss(index_t classes, const T* z, int64_t target, T scale, T* grad,
                const kernels::KernelTable<T>& kt) {
  T top = z[0];
  bool nan = false;
  for (index_t j = 0; j < classes; ++j) {
    nan |= std::isnan(z[j]);
    top = std::max(top, z[j]);
  }
  if (nan) top = std::numeric_limits<T>::quiet_NaN();  // then NaN everywhere, as NumPy's max
  for (index_t j = 0; j < classes; ++j) grad[j] = z[j] - top;
  const T shifted_target = grad[target];
  kt.exp(classes, grad, grad);
  double total = 0;
  for (index_t j = 0; j < classes; ++j) total += static_cast<double>(grad[j]);
  const T inv = static_cast<T>(static_cast<double>(scale) / total);
  for (index_t j = 0; j < classes; ++j) grad[j] *= inv;
  grad[target] -= scale;
  return std::log(total) - static_cast<double>(shifted_target);
}

}  // namespace

template <typename T>
double softmax_cross_entropy(index_t rows, index_t classes, const T* z, const int64_t* targets,
                             const uint8_t* counted, T scale, T* grad) {
  const auto& kt = kernels::active_kernels<T>();
  std::vector<double> losses(static_cast<size_t>(rows), 0.0);
  parallel_for(rows, std::max<index_t>(1, 65536 / std::max<index_t>(classes, 1)),
               [&](index_t r0, index_t r1) {
                 for (index_t r = r0; r < r1; ++r) {
                   T* g = grad + r * classes;
                   if (!counted[r]) {
                     std::fill(g, g + classes, T(0));
                     continue;
                   }
                   losses[static_cast<size_t>(r)] =
                       row_loss(classes, z + r * classes, targets[r], scale, g, kt);
                 }
               });
  double sum = 0;
  for (double l : losses) sum += l;
  return sum;
}

template double softmax_cross_entropy<float>(index_t, index_t, const float*, const int64_t*,
                                             const uint8_t*, float, float*);
template double softmax_cross_entropy<double>(index_t, index_t, const double*, const int64_t*,
                                              const uint8_t*, double, double*);

}  // namespace rnnfast
