// Dropout between stacked layers (training only; none after the last layer), as torch.nn.RNN.
//
// The mask is a function of (key, layer, index) alone: element i of the array between layer l
// and l+1 (time-major [T, B, D*S]) is kept when the top 24 bits of
// mix64(mix64(key ^ mix64(l)) + i) are >= round(p * 2^24), and a kept value is scaled by
// 1 / (1 - p). So backward recomputes the mask from the key instead of storing it, the result
// does not depend on threads, and rnnfast.reference computes the same mask in NumPy.
// A dropped value is multiplied by 0 (NaN stays NaN, as in PyTorch).
#pragma once
#include <cstdint>

#include "runtime/types.h"

namespace rnnfast {

struct Dropout {
  double p = 0;      // in [0, 1]; 0: no dropout
  uint64_t key = 0;  // names the masks of one forward (and its backward)
  bool active() const { return p > 0; }
};

// splitmix64's finaliser: a bijection of 64-bit words whose outputs look independent.
inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// a[i] *= (kept ? 1 / (1 - p) : 0) for i in [0, n), the mask of layer `layer`'s output.
template <typename T>
void apply_dropout(T* a, index_t n, const Dropout& dropout, index_t layer);

}  // namespace rnnfast
