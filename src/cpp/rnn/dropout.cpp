#include "rnn/dropout.h"

#include <cmath>

#include "runtime/threads.h"

namespace rnnfast {

template <typename T>
void apply_dropout(T* a, index_t n, const Dropout& dropout, index_t layer) {
  const uint64_t stream = mix64(dropout.key ^ mix64(static_cast<uint64_t>(layer)));
  const uint64_t threshold = static_cast<uint64_t>(std::llround(dropout.p * 16777216.0));
  // p = 1 drops everything: the scale of a kept value does not matter (and would be inf).
  const T scale = dropout.p < 1 ? T(1) / (T(1) - static_cast<T>(dropout.p)) : T(0);
  parallel_for(n, 1 << 16, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const bool keep = (mix64(stream + static_cast<uint64_t>(i)) >> 40) >= threshold;
      a[i] *= keep ? scale : T(0);
    }
  });
}

template void apply_dropout<float>(float*, index_t, const Dropout&, index_t);
template void apply_dropout<double>(double*, index_t, const Dropout&, index_t);

}  // namespace rnnfast
