// Fused optimiser updates: one pass over a parameter array and its gradient and state, where
// NumPy needs a pass (and a temporary) per arithmetic operation. Same formulas, same order of
// operations as rnnfast.optim's docstring; elements are independent, so the split among
// threads never changes a result. All arrays have n elements.
#pragma once
#include "runtime/threads.h"

namespace rnnfast {

struct OptimizerHyper {
  double lr, momentum, weight_decay, eps, alpha, beta1, beta2;
  bool eps_inside_sqrt, centered, decoupled;
  long long step;  // Adam's t (1 at the first step)
};

template <typename T>
void adagrad_update(index_t n, T* p, const T* g, T* sum, const OptimizerHyper& h);
template <typename T>
void rmsprop_update(index_t n, T* p, const T* g, T* square_avg, T* grad_avg, T* momentum_buffer,
                    const OptimizerHyper& h);
template <typename T>
void adam_update(index_t n, T* p, const T* g, T* exp_avg, T* exp_avg_sq, const OptimizerHyper& h);

}  // namespace rnnfast
