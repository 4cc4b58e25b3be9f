// AVX2 + FMA Vec: 8 floats or 4 doubles per register. Compiled only in isa_avx2.cpp.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "runtime/types.h"

namespace rnnfast::kernels::avx2 {

// GEMM tile: 6 rows x 2 vectors = 12 accumulators of the 16 ymm registers (BLIS' Haswell shape).
struct VecF32 {
  using T = float;
  static constexpr index_t kWidth = 8, kMr = 6, kAcc = 12;
  static constexpr bool kHasTranspose = true;
  __m256 v;
  static VecF32 load(const T* p) { return {_mm256_loadu_ps(p)}; }
  void store(T* p) const { _mm256_storeu_ps(p, v); }
  // The first n < kWidth lanes (the others read as 0, are not written).
  static __m256i first(index_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static VecF32 load_n(const T* p, index_t n) { return {_mm256_maskload_ps(p, first(n))}; }
  void store_n(T* p, index_t n) const { _mm256_maskstore_ps(p, first(n), v); }
  static VecF32 set1(T x) { return {_mm256_set1_ps(x)}; }
  friend VecF32 operator+(VecF32 a, VecF32 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend VecF32 operator-(VecF32 a, VecF32 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend VecF32 operator*(VecF32 a, VecF32 b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend VecF32 operator/(VecF32 a, VecF32 b) { return {_mm256_div_ps(a.v, b.v)}; }
  friend VecF32 min(VecF32 a, VecF32 b) { return {_mm256_min_ps(a.v, b.v)}; }  // NaN: b
  friend VecF32 max(VecF32 a, VecF32 b) { return {_mm256_max_ps(a.v, b.v)}; }  // NaN: b
  friend VecF32 fma(VecF32 a, VecF32 b, VecF32 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  friend VecF32 fnma(VecF32 a, VecF32 b, VecF32 c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
  friend VecF32 floor(VecF32 a) { return {_mm256_floor_ps(a.v)}; }
  friend VecF32 round_nearest(VecF32 a) {
    return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  friend VecF32 abs(VecF32 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  friend VecF32 copysign(VecF32 mag, VecF32 sign) {
    const __m256 s = _mm256_set1_ps(-0.0f);
    return {_mm256_or_ps(_mm256_andnot_ps(s, mag.v), _mm256_and_ps(s, sign.v))};
  }
  friend VecF32 select_lt(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {_mm256_blendv_ps(otherwise.v, then.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))};
  }
  friend VecF32 select_ge(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {_mm256_blendv_ps(otherwise.v, then.v, _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ))};
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecF32 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // Rows r[0..7] of an 8x8 block become its columns (unpack, shuffle, then swap 128-bit halves).
  friend void transpose(VecF32 (&r)[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i].v, r[i + 1].v);
      t[i + 1] = _mm256_unpackhi_ps(r[i].v, r[i + 1].v);
    }
    for (int i = 0; i < 8; i += 4) {
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      r[i].v = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
      r[i + 4].v = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
  }
  friend VecF32 pow2(VecF32 n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
  }
  // bf16 pairs (kernels/bf16.h): the low or the high halves of kWidth words, as floats.
  static VecF32 widen_low(const uint32_t* p) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
  }
  static VecF32 widen_high(const uint32_t* p) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {
        _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))))};
  }
};

struct VecF64 {
  using T = double;
  static constexpr index_t kWidth = 4, kMr = 6, kAcc = 12;
  static constexpr bool kHasTranspose = true;
  __m256d v;
  static VecF64 load(const T* p) { return {_mm256_loadu_pd(p)}; }
  void store(T* p) const { _mm256_storeu_pd(p, v); }
  static __m256i first(index_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static VecF64 load_n(const T* p, index_t n) { return {_mm256_maskload_pd(p, first(n))}; }
  void store_n(T* p, index_t n) const { _mm256_maskstore_pd(p, first(n), v); }
  static VecF64 set1(T x) { return {_mm256_set1_pd(x)}; }
  friend VecF64 operator+(VecF64 a, VecF64 b) { return {_mm256_add_pd(a.v, b.v)}; }
  friend VecF64 operator-(VecF64 a, VecF64 b) { return {_mm256_sub_pd(a.v, b.v)}; }
  friend VecF64 operator*(VecF64 a, VecF64 b) { return {_mm256_mul_pd(a.v, b.v)}; }
  friend VecF64 operator/(VecF64 a, VecF64 b) { return {_mm256_div_pd(a.v, b.v)}; }
  friend VecF64 min(VecF64 a, VecF64 b) { return {_mm256_min_pd(a.v, b.v)}; }
  friend VecF64 max(VecF64 a, VecF64 b) { return {_mm256_max_pd(a.v, b.v)}; }
  friend VecF64 fma(VecF64 a, VecF64 b, VecF64 c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
  friend VecF64 fnma(VecF64 a, VecF64 b, VecF64 c) { return {_mm256_fnmadd_pd(a.v, b.v, c.v)}; }
  friend VecF64 floor(VecF64 a) { return {_mm256_floor_pd(a.v)}; }
  friend VecF64 round_nearest(VecF64 a) {
    return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  friend VecF64 abs(VecF64 a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
  friend VecF64 copysign(VecF64 mag, VecF64 sign) {
    const __m256d s = _mm256_set1_pd(-0.0);
    return {_mm256_or_pd(_mm256_andnot_pd(s, mag.v), _mm256_and_pd(s, sign.v))};
  }
  friend VecF64 select_lt(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {_mm256_blendv_pd(otherwise.v, then.v, _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ))};
  }
  friend VecF64 select_ge(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {_mm256_blendv_pd(otherwise.v, then.v, _mm256_cmp_pd(a.v, b.v, _CMP_GE_OQ))};
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecF64 a) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend void transpose(VecF64 (&r)[4]) {
    const __m256d t0 = _mm256_unpacklo_pd(r[0].v, r[1].v), t1 = _mm256_unpackhi_pd(r[0].v, r[1].v);
    const __m256d t2 = _mm256_unpacklo_pd(r[2].v, r[3].v), t3 = _mm256_unpackhi_pd(r[2].v, r[3].v);
    r[0].v = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1].v = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2].v = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3].v = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
  friend VecF64 pow2(VecF64 n) {
    const __m256i e =
        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n.v)), _mm256_set1_epi64x(1023));
    return {_mm256_castsi256_pd(_mm256_slli_epi64(e, 52))};
  }
};

}  // namespace rnnfast::kernels::avx2
