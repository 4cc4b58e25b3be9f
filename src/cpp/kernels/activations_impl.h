// exp, tanh and sigmoid on vectors and arrays, written once against the Vec types and compiled
// per ISA: included by kernel_impl.h, inside the ISA's own namespace, before the cell kernels
// (kernels/recurrent_impl.h) that call them per vector.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Activations ---------------------------------------------------------------------------
// Error bounds, for results in the normal range (tests/engine/test_activations.py asserts them over
// a dense sweep against libm): exp within 2 ulp, tanh and sigmoid within 4 ulp (measured on avx2
// and generic: 1, 3 and 3 ulp); subnormal results within one subnormal step.
// exp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact n*ln2_hi), e^r by its
// Taylor polynomial (degree 7 for float, 13 for double: truncation below half an ulp), then
// scaled by 2^n in two halves so that results in the subnormal range and overflow to inf come
// out right. NaN propagates (min/max return their second operand on NaN); +-inf give inf and 0.

template <typename T>
constexpr T inverse_factorial(int k) {
  T f = T(1);
  for (int i = 2; i <= k; ++i) f *= T(i);
  return T(1) / f;
}

// p * 2^n for an integral n within exp_v's clamps, rounded once: by the Vec type's instruction
// where it has one (AVX-512's vscalef), else in two exact halves of n and a last rounding
// multiplication. Both give the same bits (checked once for every float input of exp_v and 4e8
// random doubles, under the default MXCSR and under flush-to-zero, the kernels' mode;
// tests/engine/test_activations.py compares the ISAs over its sweep), and vscalef is ~30%
// cheaper a sigmoid.
template <typename V>
constexpr auto has_scalef(int) -> decltype(V::scalef(V{}, V{}), true) {
  return true;
}
template <typename V>
constexpr bool has_scalef(...) {
  return false;
}
template <typename V>
RNNFAST_INLINE V scale_pow2(V p, V n) {
  using T = typename V::T;
  if constexpr (has_scalef<V>(0)) {
    return V::scalef(p, n);
  } else {
    const V n1 = floor(n * V::set1(T(0.5)));
    return p * pow2(n1) * pow2(n - n1);
  }
}

template <typename V>
RNNFAST_INLINE V exp_v(V x) {
  using T = typename V::T;
  constexpr bool f32 = sizeof(T) == 4;
  constexpr int degree = f32 ? 7 : 13;
  const T ln2_hi = f32 ? T(0.693359375) : T(6.93147180369123816490e-01);
  const T ln2_lo = f32 ? T(-2.12194440e-4) : T(1.90821492927058770002e-10);
  const T log2e = T(1.44269504088896340736);
  // Beyond these e^x is 0 or inf in T; clamping keeps 2^n's halves representable.
  const V lo = V::set1(f32 ? T(-104) : T(-746)), hi = V::set1(f32 ? T(89) : T(710));
  x = max(lo, min(hi, x));
  const V n = round_nearest(x * V::set1(log2e));
  V r = fnma(n, V::set1(ln2_hi), x);
  r = fnma(n, V::set1(ln2_lo), r);
  V p = V::set1(inverse_factorial<T>(degree));
  for (int k = degree - 1; k >= 0; --k) p = fma(p, r, V::set1(inverse_factorial<T>(k)));
  return scale_pow2(p, n);
}

// tanh: for |x| < 1/4 the odd Taylor series x + x^3 * sum c_k x^(2k) (6 terms in float, 11 in
// double: truncation below 1e-9 and 5e-16 relative); beyond, (1 - e)/(1 + e) with e = exp(-2|x|),
// which never overflows and has no cancellation there (e < 0.61); both on |x|, then the sign.
template <typename V>
RNNFAST_INLINE V tanh_v(V x) {
  using T = typename V::T;
  constexpr bool f32 = sizeof(T) == 4;
  // c_k = 2^(2k) (2^(2k) - 1) B_2k / (2k)!, k = 2..11 (B: Bernoulli numbers).
  const T c[] = {T(-1) / T(3),
                 T(2) / T(15),
                 T(-17) / T(315),
                 T(62) / T(2835),
                 T(-1382) / T(155925),
                 T(21844) / T(6081075),
                 T(-929569) / T(638512875),
                 T(6404582) / T(10854718875.0),
                 T(-443861162) / T(1856156927625.0),
                 T(18888466084.0) / T(194896477400625.0)};
  constexpr int terms = f32 ? 5 : 10;
  const V ax = abs(x), x2 = x * x;
  V q = V::set1(c[terms - 1]);
  for (int k = terms - 2; k >= 0; --k) q = fma(q, x2, V::set1(c[k]));
  const V small = fma(ax * x2, q, ax);
  const V e = exp_v(V::set1(T(-2)) * ax);
  const V one = V::set1(T(1));
  const V large = (one - e) / (one + e);
  // tanh is odd: the sign of x goes on last, so that tanh(-0) = -0 too.
  return copysign(select_lt(ax, V::set1(T(0.25)), small, large), x);
}

// sigmoid: with e = exp(-|x|) <= 1, 1/(1+e) for x >= 0 and e/(1+e) below: no overflow, and
// full relative accuracy in both tails.
template <typename V>
RNNFAST_INLINE V sigmoid_v(V x) {
  using T = typename V::T;
  const V e = exp_v(V::set1(T(0)) - abs(x));
  const V inv = V::set1(T(1)) / (V::set1(T(1)) + e);
  return select_ge(x, V::set1(T(0)), inv, e * inv);
}

// y[i] = f(x[i]) for i < n; x and y may be the same array. The tail goes through a padded buffer.
template <typename V, typename F>
void map_array(index_t n, const typename V::T* x, typename V::T* y, F f) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth;
  index_t i = 0;
  for (; i + W <= n; i += W) f(V::load(x + i)).store(y + i);
  if (i < n) {
    T buf[W] = {};
    for (index_t j = i; j < n; ++j) buf[j - i] = x[j];
    f(V::load(buf)).store(buf);
    for (index_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

template <typename V>
void exp_array(index_t n, const typename V::T* x, typename V::T* y) {
  map_array<V>(n, x, y, [](V v) { return exp_v(v); });
}
template <typename V>
void tanh_array(index_t n, const typename V::T* x, typename V::T* y) {
  map_array<V>(n, x, y, [](V v) { return tanh_v(v); });
}
template <typename V>
void sigmoid_array(index_t n, const typename V::T* x, typename V::T* y) {
  map_array<V>(n, x, y, [](V v) { return sigmoid_v(v); });
}
