// Portable Vec: N lanes in a plain array; the compiler turns the loops into whatever SIMD the
// baseline target has (SSE2 on x86-64). Semantics match the intrinsic versions, including
// min/max returning the second operand when either is NaN.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/types.h"

namespace rnnfast::kernels::generic {

template <typename T_, int N>
struct VecArr {
  using T = T_;
  static constexpr index_t kWidth = N;
  static constexpr index_t kMr = 4;             // rows of a GEMM micro-tile
  static constexpr index_t kAcc = 8;            // accumulator vectors a micro-tile may use
  static constexpr bool kHasTranspose = false;  // packing falls back to scalar copies
  T v[N];

  static VecArr load(const T* p) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = p[i];
    return r;
  }
  void store(T* p) const {
    for (int i = 0; i < N; ++i) p[i] = v[i];
  }
  // The first n < N lanes (the others read as 0, are not written).
  static VecArr load_n(const T* p, index_t n) {
    VecArr r = set1(T(0));
    for (index_t i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  void store_n(T* p, index_t n) const {
    for (index_t i = 0; i < n; ++i) p[i] = v[i];
  }
  static VecArr set1(T x) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = x;
    return r;
  }
  template <typename F>
  friend VecArr map2(VecArr a, VecArr b, F f) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = f(a.v[i], b.v[i]);
    return r;
  }
  friend VecArr operator+(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x + y; });
  }
  friend VecArr operator-(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x - y; });
  }
  friend VecArr operator*(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x * y; });
  }
  friend VecArr operator/(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x / y; });
  }
  friend VecArr min(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x < y ? x : y; });
  }
  friend VecArr max(VecArr a, VecArr b) {
    return map2(a, b, [](T x, T y) { return x > y ? x : y; });
  }
  // a*b + c and c - a*b: no FMA in the baseline ISA, so two roundings (the same on every call).
  friend VecArr fma(VecArr a, VecArr b, VecArr c) { return a * b + c; }
  friend VecArr fnma(VecArr a, VecArr b, VecArr c) { return c - a * b; }
  friend VecArr floor(VecArr a) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = std::floor(a.v[i]);
    return r;
  }
  friend VecArr round_nearest(VecArr a) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = std::nearbyint(a.v[i]);
    return r;
  }
  friend VecArr abs(VecArr a) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = std::fabs(a.v[i]);
    return r;
  }
  friend VecArr copysign(VecArr mag, VecArr sign) {
    return map2(mag, sign, [](T x, T y) { return std::copysign(x, y); });
  }
  // Lanes where a < b (or a >= b) take `then`, others `otherwise`; NaN compares false.
  friend VecArr select_lt(VecArr a, VecArr b, VecArr then, VecArr otherwise) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] < b.v[i] ? then.v[i] : otherwise.v[i];
    return r;
  }
  friend VecArr select_ge(VecArr a, VecArr b, VecArr then, VecArr otherwise) {
    VecArr r;
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] >= b.v[i] ? then.v[i] : otherwise.v[i];
    return r;
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecArr a) {  // halves folded onto each other
    for (int width = N / 2; width > 0; width /= 2)
      for (int i = 0; i < width; ++i) a.v[i] += a.v[i + width];
    return a.v[0];
  }
  // 2^n for integral n in the normal exponent range, built from the exponent bits.
  friend VecArr pow2(VecArr n) {
    VecArr r;
    for (int i = 0; i < N; ++i) {
      if constexpr (sizeof(T) == 4) {
        const auto bits = static_cast<uint32_t>(static_cast<int32_t>(n.v[i]) + 127) << 23;
        std::memcpy(&r.v[i], &bits, sizeof(T));
      } else {
        const auto bits = static_cast<uint64_t>(static_cast<int64_t>(n.v[i]) + 1023) << 52;
        std::memcpy(&r.v[i], &bits, sizeof(T));
      }
    }
    return r;
  }
  // bf16 pairs (kernels/bf16.h), float lanes only: the low or the high halves of N words.
  static VecArr widen_low(const uint32_t* p) { return widen(p, 16, 0xffffffffu); }
  static VecArr widen_high(const uint32_t* p) { return widen(p, 0, 0xffff0000u); }

 private:
  static VecArr widen(const uint32_t* p, int shift, uint32_t mask) {
    static_assert(sizeof(T) == 4, "bf16 pairs widen to float lanes");
    VecArr r;
    for (int i = 0; i < N; ++i) {
      const uint32_t bits = (p[i] << shift) & mask;
      std::memcpy(&r.v[i], &bits, sizeof(T));
    }
    return r;
  }
};

using VecF32 = VecArr<float, 4>;
using VecF64 = VecArr<double, 2>;

}  // namespace rnnfast::kernels::generic
