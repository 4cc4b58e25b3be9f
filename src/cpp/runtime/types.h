// The index type of every size and offset in the core: signed, pointer-wide.
#pragma once
#include <cstddef>

namespace rnnfast {

using index_t = std::ptrdiff_t;

// What a module's products compute in: its own dtype, or (float32 modules) bfloat16 operands with
// float32 accumulation (kernels/bf16.h); everything else stays in the module's dtype.
enum class Precision : int { Native = 0, Bf16 = 1 };

inline index_t ceil_div(index_t a, index_t b) {
  return (a + b - 1) / b;
}

}  // namespace rnnfast
