// bfloat16 as the products of precision "bf16" use it: float32's sign, exponent and top 7
// mantissa bits. Weights are packed in pairs, the values of depth k = 2p (low half) and 2p + 1
// (high half) in one 32-bit word, the layout vdpbf16ps reads.
//
// Rounding is the one VCVTNE2PS2BF16 does (Intel SDM, "convert_fp32_to_bfloat16"): to nearest
// even, denormals to a zero of their sign, NaN kept quiet; every ISA rounds here or with that
// instruction, so every ISA sees the same bf16 operands. A pair adds to a float32 accumulator as
// vdpbf16ps does: the high product first, then the low one, each a float32 fused multiply-add of
// an exact product (8-bit mantissas: the product fits float32's 24), so the widening kernels that
// do it with two FMAs give the same bits (denormals flushed by FlushDenormals, runtime/fpenv.h).
#pragma once
#include <cstdint>
#include <cstring>

#include "runtime/types.h"

namespace rnnfast::kernels {

// `static`: each translation unit keeps its own copy, compiled with its own ISA's flags (the
// linker must never hand an AVX-512 copy to the generic kernels).

static inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const uint32_t exponent = u & 0x7f800000u, mantissa = u & 0x007fffffu;
  if (exponent == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);  // zero, denormal
  if (exponent == 0x7f800000u) {
    if (mantissa == 0) return static_cast<uint16_t>(u >> 16);  // infinity
    return static_cast<uint16_t>((u >> 16) | 0x0040u);         // NaN, made quiet
  }
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float float_of_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// x rounded to bf16 and back: the value a bf16 product uses in place of x.
static inline float round_to_bf16(float x) {
  return float_of_bf16(bf16_bits(x));
}

static inline uint32_t bf16_pair(float low, float high) {
  return static_cast<uint32_t>(bf16_bits(low)) | (static_cast<uint32_t>(bf16_bits(high)) << 16);
}

// n values of src (n may be odd: the last pair's high half is then zero) into ceil(n/2) pairs.
static inline void pack_bf16_pairs(const float* src, index_t n, uint32_t* dst) {
  index_t i = 0;
  for (; i + 1 < n; i += 2) dst[i / 2] = bf16_pair(src[i], src[i + 1]);
  if (i < n) dst[i / 2] = bf16_pair(src[i], 0.0f);
}

// Whether bf16 products run in vdpbf16ps: the active ISA is avx512_bf16 (runtime/isa.h).
bool bf16_native();

}  // namespace rnnfast::kernels
