// NEON (AArch64 Advanced SIMD) Vec: 4 floats or 2 doubles per register. Compiled only in
// isa_neon.cpp, on arm64, where NEON is part of the base architecture.
#pragma once
#include <arm_neon.h>

#include <cstdint>

#include "runtime/types.h"

namespace rnnfast::kernels::neon {

// GEMM tile: 6 rows x 2 vectors = 12 accumulators of the 32 vector registers, leaving room for
// the B vectors and broadcasts (kAcc can grow on cores with more load bandwidth).
struct VecF32 {
  using T = float;
  static constexpr index_t kWidth = 4, kMr = 6, kAcc = 12;
  static constexpr bool kHasTranspose = false;  // packing falls back to scalar copies
  float32x4_t v;
  static VecF32 load(const T* p) { return {vld1q_f32(p)}; }
  void store(T* p) const { vst1q_f32(p, v); }
  // The first n < kWidth lanes (the others read as 0, are not written), through a buffer.
  static VecF32 load_n(const T* p, index_t n) {
    T buf[4] = {};
    for (index_t i = 0; i < n; ++i) buf[i] = p[i];
    return load(buf);
  }
  void store_n(T* p, index_t n) const {
    T buf[4];
    store(buf);
    for (index_t i = 0; i < n; ++i) p[i] = buf[i];
  }
  static VecF32 set1(T x) { return {vdupq_n_f32(x)}; }
  friend VecF32 operator+(VecF32 a, VecF32 b) { return {vaddq_f32(a.v, b.v)}; }
  friend VecF32 operator-(VecF32 a, VecF32 b) { return {vsubq_f32(a.v, b.v)}; }
  friend VecF32 operator*(VecF32 a, VecF32 b) { return {vmulq_f32(a.v, b.v)}; }
  friend VecF32 operator/(VecF32 a, VecF32 b) { return {vdivq_f32(a.v, b.v)}; }
  // x86 semantics (NaN in either operand gives the second), kept so the math is ISA-neutral.
  friend VecF32 min(VecF32 a, VecF32 b) { return {vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }
  friend VecF32 max(VecF32 a, VecF32 b) { return {vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
  friend VecF32 fma(VecF32 a, VecF32 b, VecF32 c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
  friend VecF32 fnma(VecF32 a, VecF32 b, VecF32 c) { return {vfmsq_f32(c.v, a.v, b.v)}; }
  friend VecF32 floor(VecF32 a) { return {vrndmq_f32(a.v)}; }
  friend VecF32 round_nearest(VecF32 a) { return {vrndnq_f32(a.v)}; }
  friend VecF32 abs(VecF32 a) { return {vabsq_f32(a.v)}; }
  friend VecF32 copysign(VecF32 mag, VecF32 sign) {
    const uint32x4_t s = vdupq_n_u32(0x80000000u);
    return {vbslq_f32(s, sign.v, mag.v)};
  }
  friend VecF32 select_lt(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {vbslq_f32(vcltq_f32(a.v, b.v), then.v, otherwise.v)};
  }
  friend VecF32 select_ge(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {vbslq_f32(vcgeq_f32(a.v, b.v), then.v, otherwise.v)};
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecF32 a) { return vaddvq_f32(a.v); }
  friend VecF32 pow2(VecF32 n) {
    const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n.v), vdupq_n_s32(127));
    return {vreinterpretq_f32_s32(vshlq_n_s32(e, 23))};
  }
  // bf16 pairs (kernels/bf16.h): the low or the high halves of kWidth words, as floats.
  static VecF32 widen_low(const uint32_t* p) {
    return {vreinterpretq_f32_u32(vshlq_n_u32(vld1q_u32(p), 16))};
  }
  static VecF32 widen_high(const uint32_t* p) {
    return {vreinterpretq_f32_u32(vandq_u32(vld1q_u32(p), vdupq_n_u32(0xffff0000u)))};
  }
};

struct VecF64 {
  using T = double;
  static constexpr index_t kWidth = 2, kMr = 6, kAcc = 12;
  static constexpr bool kHasTranspose = false;
  float64x2_t v;
  static VecF64 load(const T* p) { return {vld1q_f64(p)}; }
  void store(T* p) const { vst1q_f64(p, v); }
  static VecF64 load_n(const T* p, index_t n) {
    T buf[2] = {};
    for (index_t i = 0; i < n; ++i) buf[i] = p[i];
    return load(buf);
  }
  void store_n(T* p, index_t n) const {
    T buf[2];
    store(buf);
    for (index_t i = 0; i < n; ++i) p[i] = buf[i];
  }
  static VecF64 set1(T x) { return {vdupq_n_f64(x)}; }
  friend VecF64 operator+(VecF64 a, VecF64 b) { return {vaddq_f64(a.v, b.v)}; }
  friend VecF64 operator-(VecF64 a, VecF64 b) { return {vsubq_f64(a.v, b.v)}; }
  friend VecF64 operator*(VecF64 a, VecF64 b) { return {vmulq_f64(a.v, b.v)}; }
  friend VecF64 operator/(VecF64 a, VecF64 b) { return {vdivq_f64(a.v, b.v)}; }
  friend VecF64 min(VecF64 a, VecF64 b) { return {vbslq_f64(vcltq_f64(a.v, b.v), a.v, b.v)}; }
  friend VecF64 max(VecF64 a, VecF64 b) { return {vbslq_f64(vcgtq_f64(a.v, b.v), a.v, b.v)}; }
  friend VecF64 fma(VecF64 a, VecF64 b, VecF64 c) { return {vfmaq_f64(c.v, a.v, b.v)}; }
  friend VecF64 fnma(VecF64 a, VecF64 b, VecF64 c) { return {vfmsq_f64(c.v, a.v, b.v)}; }
  friend VecF64 floor(VecF64 a) { return {vrndmq_f64(a.v)}; }
  friend VecF64 round_nearest(VecF64 a) { return {vrndnq_f64(a.v)}; }
  friend VecF64 abs(VecF64 a) { return {vabsq_f64(a.v)}; }
  friend VecF64 copysign(VecF64 mag, VecF64 sign) {
    const uint64x2_t s = vdupq_n_u64(0x8000000000000000ull);
    return {vbslq_f64(s, sign.v, mag.v)};
  }
  friend VecF64 select_lt(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {vbslq_f64(vcltq_f64(a.v, b.v), then.v, otherwise.v)};
  }
  friend VecF64 select_ge(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {vbslq_f64(vcgeq_f64(a.v, b.v), then.v, otherwise.v)};
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecF64 a) { return vaddvq_f64(a.v); }
  friend VecF64 pow2(VecF64 n) {
    const int64x2_t e = vaddq_s64(vcvtq_s64_f64(n.v), vdupq_n_s64(1023));
    return {vreinterpretq_f64_s64(vshlq_n_s64(e, 52))};
  }
};

}  // namespace rnnfast::kernels::neon
