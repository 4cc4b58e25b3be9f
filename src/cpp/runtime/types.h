// The index type of every size and offset in the core: signed, pointer-wide.
#pragma once
#include <cstddef>

namespace rnnfast {

using index_t = std::ptrdiff_t;

inline index_t ceil_div(index_t a, index_t b) {
  return (a + b - 1) / b;
}

}  // namespace rnnfast
