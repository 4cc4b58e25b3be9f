// The per-ISA kernels, written once against a Vec type (vec_*.h) and compiled once per ISA.
// Include only from an isa_*.cpp after defining RNNFAST_ISA_NS (the namespace) and
// RNNFAST_ISA_ENUM (the Isa value), and including the ISA's vec_*.h: every template lands in that
// ISA's own namespace, so the linker can never hand one ISA's inline code to another.
#if !defined(RNNFAST_ISA_NS) || !defined(RNNFAST_ISA_ENUM)
#error "define RNNFAST_ISA_NS and RNNFAST_ISA_ENUM before including kernel_impl.h"
#endif

#include "kernels/table.h"

// The activations are called per vector from the cell epilogues: always inlined, never calls.
#if defined(__GNUC__)
#define RNNFAST_INLINE inline __attribute__((always_inline))
#else
#define RNNFAST_INLINE inline
#endif

namespace rnnfast::kernels::RNNFAST_ISA_NS {

// No standard-library templates in here: their instantiations are shared between translation
// units, and one compiled with AVX2 flags must never be linked into the generic path.
constexpr index_t smaller(index_t a, index_t b) {
  return a < b ? a : b;
}

// ---- GEMM micro-kernel ---------------------------------------------------------------------
// A is read in place through strides, element (r, k) at a[r*rs + k*ks]: a row-major operand
// (rs = lda, ks = 1) or a transposed one (rs = 1, ks = lda) needs no packing (packing A cost as
// much as the multiply-adds when N is small, as in the weight gradients). Packed B: panels of
// 2*kWidth columns, element (k, j) at k*NR + j, consecutive panels b_stride apart. Every C element
// is one accumulator summed over k in ascending order with fused multiply-adds, whatever tile
// shape computes it, so results do not depend on the batch size or the thread split.

template <typename T>
struct AView {
  const T* a;
  index_t rs, ks;
};

// C (+)= A * B for R rows of A and P consecutive B panels; `cols` clips the last panel.
template <typename V, int R, int P>
void tile(index_t kc, AView<typename V::T> av, const typename V::T* b, index_t b_stride,
          typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth, NR = 2 * W;
  V acc[R][2 * P];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 2 * P; ++q) acc[r][q] = V::set1(T(0));
  const T* a = av.a;
  for (index_t k = 0; k < kc; ++k, a += av.ks) {
    if constexpr (R == 1) {  // no reuse of b: each feeds its FMA from memory (no spills)
      const V ar = V::set1(a[0]);
      for (int p = 0; p < P; ++p) {
        acc[0][2 * p] = fma(ar, V::load(b + p * b_stride + k * NR), acc[0][2 * p]);
        acc[0][2 * p + 1] = fma(ar, V::load(b + p * b_stride + k * NR + W), acc[0][2 * p + 1]);
      }
    } else {
      V bv[2 * P];
      for (int p = 0; p < P; ++p) {
        bv[2 * p] = V::load(b + p * b_stride + k * NR);
        bv[2 * p + 1] = V::load(b + p * b_stride + k * NR + W);
      }
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(a[r * av.rs]);
        for (int q = 0; q < 2 * P; ++q) acc[r][q] = fma(ar, bv[q], acc[r][q]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < 2 * P; ++q) {
      const index_t col = q * W;
      if (col >= cols) break;
      T* dst = c + r * ldc + col;
      if (col + W <= cols) {
        (accumulate ? V::load(dst) + acc[r][q] : acc[r][q]).store(dst);
      } else {  // the ragged edge of the last panel
        T buf[W];
        acc[r][q].store(buf);
        for (index_t j = 0; j < cols - col; ++j) dst[j] = accumulate ? dst[j] + buf[j] : buf[j];
      }
    }
  }
}

// The last `count` (< P) panels of a row block in one tile: single-panel tiles would leave too
// few independent accumulators to hide the FMA latency.
template <typename V, int R, int P>
void remainder_tile(index_t count, index_t kc, AView<typename V::T> a, const typename V::T* b,
                    index_t b_stride, typename V::T* c, index_t ldc, index_t cols,
                    bool accumulate) {
  if constexpr (P > 0) {
    if (count == P) return tile<V, R, P>(kc, a, b, b_stride, c, ldc, cols, accumulate);
    remainder_tile<V, R, P - 1>(count, kc, a, b, b_stride, c, ldc, cols, accumulate);
  }
}

// R rows against every panel: P panels at a time, as many as the accumulator registers allow.
template <typename V, int R>
void row_block(index_t kc, AView<typename V::T> a, const typename V::T* b, index_t b_stride,
               typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  constexpr int P =
      static_cast<int>(V::kAcc) / (2 * R) > 1 ? static_cast<int>(V::kAcc) / (2 * R) : 1;
  constexpr index_t NR = 2 * V::kWidth;
  const index_t panels = (cols + NR - 1) / NR;
  index_t p = 0;
  for (; p + P <= panels; p += P)
    tile<V, R, P>(kc, a, b + p * b_stride, b_stride, c + p * NR, ldc, cols - p * NR, accumulate);
  if (p < panels)
    remainder_tile<V, R, P - 1>(panels - p, kc, a, b + p * b_stride, b_stride, c + p * NR, ldc,
                                cols - p * NR, accumulate);
}

template <typename V, int R = static_cast<int>(V::kMr)>
void rows_dispatch(index_t rows, index_t kc, AView<typename V::T> a, const typename V::T* b,
                   index_t b_stride, typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  if (rows == R) return row_block<V, R>(kc, a, b, b_stride, c, ldc, cols, accumulate);
  if constexpr (R > 1) rows_dispatch<V, R - 1>(rows, kc, a, b, b_stride, c, ldc, cols, accumulate);
}

// Rows in tiles of nearly equal height (a 32-row block: 11, 11, 10, not 12, 12, 8).
template <typename V>
void gemm_block(index_t kc, index_t rows, index_t cols, const typename V::T* a, index_t a_rs,
                index_t a_ks, const typename V::T* b, index_t b_stride, typename V::T* c,
                index_t ldc, bool accumulate) {
  const index_t tiles = (rows + V::kMr - 1) / V::kMr;
  const index_t base = rows / tiles, taller = rows % tiles;
  for (index_t i = 0, ir = 0; i < tiles; ++i) {
    const index_t n = base + (i < taller ? 1 : 0);
    rows_dispatch<V>(n, kc, AView<typename V::T>{a + ir * a_rs, a_rs, a_ks}, b, b_stride,
                     c + ir * ldc, ldc, cols, accumulate);
    ir += n;
  }
}

// ---- Packing -------------------------------------------------------------------------------
// One B panel from rows of a matrix (op(B) = src^T): dst[k*NR + j] = src[j*ldb + k] for
// j < cols, zero for cols <= j < NR. With a register transpose, W x W blocks at a time.
template <typename V>
void pack_b_transposed(index_t k, index_t cols, const typename V::T* src, index_t ldb,
                       typename V::T* dst) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth, NR = 2 * W;
  index_t j = 0;
  if constexpr (V::kHasTranspose) {
    for (; j + W <= cols; j += W) {
      index_t kk = 0;
      for (; kk + W <= k; kk += W) {
        V r[W];
        for (index_t i = 0; i < W; ++i) r[i] = V::load(src + (j + i) * ldb + kk);
        transpose(r);
        for (index_t i = 0; i < W; ++i) r[i].store(dst + (kk + i) * NR + j);
      }
      for (; kk < k; ++kk)
        for (index_t i = 0; i < W; ++i) dst[kk * NR + j + i] = src[(j + i) * ldb + kk];
    }
  }
  for (; j < cols; ++j)
    for (index_t kk = 0; kk < k; ++kk) dst[kk * NR + j] = src[j * ldb + kk];
  for (j = cols; j < NR; ++j)
    for (index_t kk = 0; kk < k; ++kk) dst[kk * NR + j] = T(0);
}

// ---- Activations ---------------------------------------------------------------------------
// Error bounds, for results in the normal range (tests/test_activations.py asserts them over a
// dense sweep against libm): exp within 2 ulp, tanh and sigmoid within 4 ulp (measured on avx2
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
  const V n1 = floor(n * V::set1(T(0.5)));
  return p * pow2(n1) * pow2(n - n1);
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

#include "kernels/recurrent_impl.h"

template <typename V>
constexpr KernelTable<typename V::T> make_table(Isa isa) {
  return {isa,
          V::kMr,
          2 * V::kWidth,
          &gemm_block<V>,
          &pack_b_transposed<V>,
          &exp_array<V>,
          &tanh_array<V>,
          &sigmoid_array<V>,
          V::kWidth,
          &rnn_forward<V>,
          &lstm_forward<V>,
          &lstm_project<V>,
          &gru_forward<V>,
          &gru_rb_gates<V>,
          &gru_rb_update<V>,
          &rnn_backward<V>,
          &lstm_backward<V>,
          &lstm_proj_dh<V>,
          &gru_backward<V>,
          &gru_rb_backward<V>,
          &gru_rb_backward_reset<V>,
          &final_dh<V>};
}

// This ISA's tables, found by table.cpp through overloading on the element type.
const KernelTable<float>& table(float) {
  static constexpr KernelTable<float> kTable = make_table<VecF32>(RNNFAST_ISA_ENUM);
  return kTable;
}
const KernelTable<double>& table(double) {
  static constexpr KernelTable<double> kTable = make_table<VecF64>(RNNFAST_ISA_ENUM);
  return kTable;
}

}  // namespace rnnfast::kernels::RNNFAST_ISA_NS
