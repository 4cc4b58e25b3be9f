// How the products' inner loops multiply and add, one policy per operand format, so the GEMM's
// and the recurrent step's register tiles are written once (gemm_impl.h, recurrent_impl.h).
// Included by kernel_impl.h inside the ISA's namespace.
//
// A policy has A and B (an element of A, of packed B), kDepth (depth values per element: 1, or 2
// for bf16 pairs), Bcast/broadcast (an A element to every lane), Weights/load (kWidth B elements)
// and madd(acc, Bcast, Weights); a bf16 one also rounds floats into pairs (convert, pair_rows,
// convert_columns: with its instruction, or leaving the work to kernels/bf16.h's scalar code). Each
// accumulator sums its depth in ascending order whatever the tile, so results depend on neither the
// tile shape nor the thread split.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// float32 or float64: acc += a * w, one FMA a depth value.
template <typename V>
struct PlainMadd {
  using A = typename V::T;
  using B = typename V::T;
  using Bcast = V;
  using Weights = V;
  static constexpr index_t kDepth = 1;
  static Bcast broadcast(A a) { return V::set1(a); }
  static Weights load(const B* p) { return V::load(p); }
  static V madd(V acc, Bcast a, Weights w) { return fma(a, w, acc); }
};

// bf16 pairs widened to float32 on load (kernels/bf16.h): two FMAs a pair, the high product
// first, as vdpbf16ps adds them. Any ISA; the same bits as NativeBf16.
template <typename V>
struct WideBf16 {
  using A = uint32_t;
  using B = uint32_t;
  struct Bcast {
    V low, high;
  };
  struct Weights {
    V low, high;
  };
  static constexpr index_t kDepth = 2;
  static Bcast broadcast(A a) {
    return {V::set1(float_of_bf16(static_cast<uint16_t>(a))),
            V::set1(float_of_bf16(static_cast<uint16_t>(a >> 16)))};
  }
  static Weights load(const B* p) { return {V::widen_low(p), V::widen_high(p)}; }
  static V madd(V acc, const Bcast& a, const Weights& w) {
    return fma(a.low, w.low, fma(a.high, w.high, acc));
  }
  // (No vector rounding here: every conversion is left to the scalar code of kernels/bf16.h.)
  static index_t convert(const float*, index_t, uint32_t*) { return 0; }
  static index_t pair_rows(const float*, const float*, index_t, uint32_t*) { return 0; }
  static void convert_columns(index_t rows, index_t depth, const float* a, index_t lda,
                              uint32_t* dst, index_t ld) {
    for (index_t i = 0; i < rows; ++i)
      for (index_t p = 0; 2 * p < depth; ++p)
        dst[i * ld + p] =
            bf16_pair(a[2 * p * lda + i], 2 * p + 1 < depth ? a[(2 * p + 1) * lda + i] : 0.0f);
  }
};

// n floats into ceil(n/2) bf16 pairs, whole vectors by the policy's instruction where it has one.
template <typename Op>
void to_bf16_pairs(const float* src, index_t n, uint32_t* dst) {
  const index_t done = Op::convert(src, n / 2, dst);
  pack_bf16_pairs(src + 2 * done, n - 2 * done, dst + done);
}

// Runs run(policy) with the bf16 policy of this CPU: vdpbf16ps under avx512_bf16, else widening.
template <typename V, typename Run>
RNNFAST_INLINE void with_bf16(const Run& run) {
#if defined(__AVX512BF16__)
  if (bf16_native()) return run(NativeBf16{});
#endif
  run(WideBf16<V>{});
}
