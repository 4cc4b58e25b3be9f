// AVX-512F Vec: 16 floats or 8 doubles per register. Compiled only in isa_avx512.cpp.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "runtime/types.h"

namespace rnnfast::kernels::avx512 {

// GEMM tile: 12 rows x 2 vectors = 24 accumulators of the 32 zmm registers.
struct VecF32 {
  using T = float;
  static constexpr index_t kWidth = 16, kMr = 12, kAcc = 24;
  static constexpr bool kHasTranspose = false;  // packing falls back to scalar copies
  __m512 v;
  static VecF32 load(const T* p) { return {_mm512_loadu_ps(p)}; }
  void store(T* p) const { _mm512_storeu_ps(p, v); }
  // The first n < kWidth lanes (the others read as 0, are not written).
  static __mmask16 first(index_t n) { return static_cast<__mmask16>((1u << n) - 1); }
  static VecF32 load_n(const T* p, index_t n) { return {_mm512_maskz_loadu_ps(first(n), p)}; }
  void store_n(T* p, index_t n) const { _mm512_mask_storeu_ps(p, first(n), v); }
  static VecF32 set1(T x) { return {_mm512_set1_ps(x)}; }
  friend VecF32 operator+(VecF32 a, VecF32 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend VecF32 operator-(VecF32 a, VecF32 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend VecF32 operator*(VecF32 a, VecF32 b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend VecF32 operator/(VecF32 a, VecF32 b) { return {_mm512_div_ps(a.v, b.v)}; }
  friend VecF32 min(VecF32 a, VecF32 b) { return {_mm512_min_ps(a.v, b.v)}; }  // NaN: b
  friend VecF32 max(VecF32 a, VecF32 b) { return {_mm512_max_ps(a.v, b.v)}; }  // NaN: b
  friend VecF32 fma(VecF32 a, VecF32 b, VecF32 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  friend VecF32 fnma(VecF32 a, VecF32 b, VecF32 c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
  friend VecF32 floor(VecF32 a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEG_INF)}; }
  friend VecF32 round_nearest(VecF32 a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT)};
  }
  friend VecF32 abs(VecF32 a) { return {_mm512_abs_ps(a.v)}; }
  friend VecF32 copysign(VecF32 mag, VecF32 sign) {
    const __m512i s = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i m = _mm512_andnot_si512(s, _mm512_castps_si512(mag.v));
    return {
        _mm512_castsi512_ps(_mm512_or_si512(m, _mm512_and_si512(s, _mm512_castps_si512(sign.v))))};
  }
  friend VecF32 select_lt(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), otherwise.v, then.v)};
  }
  friend VecF32 select_ge(VecF32 a, VecF32 b, VecF32 then, VecF32 otherwise) {
    return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ), otherwise.v, then.v)};
  }
  // The lanes' sum, in one fixed order (rows_dot): the 256-bit halves added, then the 128-bit
  // halves, then lanes (0, 2) and (1, 3), then those two (GCC's _mm512_reduce_add_ps's tree,
  // written out so that no compiler's choice changes it).
  friend T lane_sum(VecF32 a) {
    const __m256 h =
        _mm256_add_ps(_mm512_castps512_ps256(a.v),
                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));  // lanes 0 + 2, 1 + 3
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
  }
  // out[i] = lane_sum(a[i]) for 16 vectors, with the same bits: each level of lane_sum's tree
  // adds the same pairs of 16 rows at once (15 additions for the 16 sums instead of 64), and
  // the last permutation puts row i in lane i.
  static constexpr bool kHasLaneSums = true;
  static void lane_sums(const VecF32* a, T* out) {
    __m512 b[8], c[4], d[2];
    for (int i = 0; i < 8; ++i) {  // rows 2i, 2i+1: lanes i and i + 8 (256-bit halves)
      const __m512 p = a[2 * i].v, q = a[2 * i + 1].v;
      b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE));
    }
    for (int i = 0; i < 4; ++i)  // then lanes i and i + 4 (128-bit halves): block k, row 4i + k
      c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; ++i)  // then lanes (0, 2) and (1, 3) of each block
      d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44),
                           _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xEE));
    // then those two: lane 4k + j holds row 4j + k
    const __m512 e =
        _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
    const __m512i rows = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(rows, e));
  }
  static VecF32 scalef(VecF32 p, VecF32 n) { return {_mm512_scalef_ps(p.v, n.v)}; }
  friend VecF32 pow2(VecF32 n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
  }
  // bf16 pairs (kernels/bf16.h): the low or the high halves of kWidth words, as floats.
  static VecF32 widen_low(const uint32_t* p) {
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(p), 16))};
  }
  static VecF32 widen_high(const uint32_t* p) {
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    return {_mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(p), high))};
  }
};

#if defined(__AVX512BF16__)
// bf16 pair products in vdpbf16ps (AVX512_BF16), a product policy of kernels/madd_impl.h; used
// only when the CPU has it (bf16_native, kernels/bf16.h).
struct NativeBf16 {
  using A = uint32_t;
  using B = uint32_t;
  using Bcast = __m512bh;
  using Weights = __m512bh;
  static constexpr index_t kDepth = 2;
  static Bcast broadcast(A a) { return (__m512bh)_mm512_set1_epi32(static_cast<int>(a)); }
  static Weights load(const B* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static VecF32 madd(VecF32 acc, Bcast a, Weights w) { return {_mm512_dpbf16_ps(acc.v, a, w)}; }
  // The first 16*floor(pairs/16) pairs of src into dst (vcvtne2ps2bf16, the rounding of
  // kernels/bf16.h); returns how many, the caller converts the rest.
  static index_t convert(const float* src, index_t pairs, uint32_t* dst) {
    index_t i = 0;
    for (; i + 16 <= pairs; i += 16) {
      const __m512bh b =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 2 * i + 16), _mm512_loadu_ps(src + 2 * i));
      _mm512_storeu_si512(dst + i, (__m512i)b);
    }
    return i;
  }
  // dst[j] = the pair (even[j], odd[j]) (odd null: zeros) for j < 16*floor(n/16); returns how
  // many, the caller pairs the rest.
  static index_t pair_rows(const float* even, const float* odd, index_t n, uint32_t* dst) {
    index_t j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m512 hi = odd ? _mm512_loadu_ps(odd + j) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + j, interleave(_mm512_loadu_ps(even + j), hi));
    }
    return j;
  }
  // Columns of a row-major float A as rows of pairs (a transposed A): dst[i*ld + p] = the pair
  // (a[2p*lda + i], a[(2p+1)*lda + i]) for i < rows, p < ceil(depth/2), 16 columns a vector.
  static void convert_columns(index_t rows, index_t depth, const float* a, index_t lda,
                              uint32_t* dst, index_t ld) {
    const __m512i lanes =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32(static_cast<int>(ld)));
    for (index_t i = 0; i < rows; i += 16) {
      const auto mask = static_cast<__mmask16>(rows - i >= 16 ? 0xffff : (1u << (rows - i)) - 1);
      for (index_t p = 0; 2 * p < depth; ++p) {
        const __m512 lo = _mm512_maskz_loadu_ps(mask, a + 2 * p * lda + i);
        const __m512 hi = 2 * p + 1 < depth ? _mm512_maskz_loadu_ps(mask, a + (2 * p + 1) * lda + i)
                                            : _mm512_setzero_ps();
        _mm512_mask_i32scatter_epi32(dst + i * ld + p, mask, lanes, interleave(lo, hi), 4);
      }
    }
  }

 private:
  // Sixteen (lo[l], hi[l]) bf16 pairs, lane l in word l.
  static __m512i interleave(__m512 lo, __m512 hi) {
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // lo's 16 bf16, then hi's
    const __m512i order =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, both);
  }
};
#endif

struct VecF64 {
  using T = double;
  static constexpr index_t kWidth = 8, kMr = 12, kAcc = 24;
  static constexpr bool kHasTranspose = false;  // packing falls back to scalar copies
  __m512d v;
  static VecF64 load(const T* p) { return {_mm512_loadu_pd(p)}; }
  void store(T* p) const { _mm512_storeu_pd(p, v); }
  static __mmask8 first(index_t n) { return static_cast<__mmask8>((1u << n) - 1); }
  static VecF64 load_n(const T* p, index_t n) { return {_mm512_maskz_loadu_pd(first(n), p)}; }
  void store_n(T* p, index_t n) const { _mm512_mask_storeu_pd(p, first(n), v); }
  static VecF64 set1(T x) { return {_mm512_set1_pd(x)}; }
  friend VecF64 operator+(VecF64 a, VecF64 b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend VecF64 operator-(VecF64 a, VecF64 b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend VecF64 operator*(VecF64 a, VecF64 b) { return {_mm512_mul_pd(a.v, b.v)}; }
  friend VecF64 operator/(VecF64 a, VecF64 b) { return {_mm512_div_pd(a.v, b.v)}; }
  friend VecF64 min(VecF64 a, VecF64 b) { return {_mm512_min_pd(a.v, b.v)}; }
  friend VecF64 max(VecF64 a, VecF64 b) { return {_mm512_max_pd(a.v, b.v)}; }
  friend VecF64 fma(VecF64 a, VecF64 b, VecF64 c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
  friend VecF64 fnma(VecF64 a, VecF64 b, VecF64 c) { return {_mm512_fnmadd_pd(a.v, b.v, c.v)}; }
  friend VecF64 floor(VecF64 a) { return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEG_INF)}; }
  friend VecF64 round_nearest(VecF64 a) {
    return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEAREST_INT)};
  }
  friend VecF64 abs(VecF64 a) { return {_mm512_abs_pd(a.v)}; }
  friend VecF64 copysign(VecF64 mag, VecF64 sign) {
    const __m512i s = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ull));
    const __m512i m = _mm512_andnot_si512(s, _mm512_castpd_si512(mag.v));
    return {
        _mm512_castsi512_pd(_mm512_or_si512(m, _mm512_and_si512(s, _mm512_castpd_si512(sign.v))))};
  }
  friend VecF64 select_lt(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ), otherwise.v, then.v)};
  }
  friend VecF64 select_ge(VecF64 a, VecF64 b, VecF64 then, VecF64 otherwise) {
    return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_GE_OQ), otherwise.v, then.v)};
  }
  // The lanes' sum, in one fixed order (rows_dot).
  friend T lane_sum(VecF64 a) { return _mm512_reduce_add_pd(a.v); }
  static VecF64 scalef(VecF64 p, VecF64 n) { return {_mm512_scalef_pd(p.v, n.v)}; }
  friend VecF64 pow2(VecF64 n) {
    const __m512i e =
        _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(n.v)), _mm512_set1_epi64(1023));
    return {_mm512_castsi512_pd(_mm512_slli_epi64(e, 52))};
  }
};

}  // namespace rnnfast::kernels::avx512
