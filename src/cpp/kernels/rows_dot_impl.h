// A matrix read in place, row by row, times a few vectors (rows_dot), and rows of a matrix
// combined by a few coefficients each (rows_combine): the products of a single step with a
// handful of batch rows straight from PyTorch's layout (rnn/direct_step.h), forward and
// backward, where packing the weights first, or checking a packed copy against them, costs more
// than the product. Included by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// Whether V folds 16 vectors' lanes at once in lane_sum's order (V::lane_sums).
template <typename V, typename = void>
struct HasLaneSums : std::false_type {};
template <typename V>
struct HasLaneSums<V, std::void_t<decltype(V::kHasLaneSums)>>
    : std::bool_constant<V::kHasLaneSums> {};

// Four rows of w times four vectors of x into y: each weight vector is loaded once for the four
// vectors (the row-at-a-time loop loads it once a vector, and loads bound it), and the 16 sums
// are folded together (V::lane_sums) in lane_sum's order, so each has the bits of a one-row call.
template <typename V>
RNNFAST_INLINE void rows_dot_4x4(index_t depth, const typename V::T* w, index_t ldw,
                                 const typename V::T* x, index_t ldx, typename V::T* y,
                                 index_t ldy) {
  using T = typename V::T;
  constexpr index_t kW = V::kWidth;
  const index_t full = depth - depth % kW, tail = depth - full;
  V acc[16];  // [vector b][row r] at 4 * b + r
  for (V& a : acc) a = V::set1(T(0));
  for (index_t k = 0; k < full; k += kW) {
    const V w0 = V::load(w + k), w1 = V::load(w + ldw + k), w2 = V::load(w + 2 * ldw + k),
            w3 = V::load(w + 3 * ldw + k);
    for (int b = 0; b < 4; ++b) {
      const V xv = V::load(x + b * ldx + k);
      acc[4 * b] = fma(w0, xv, acc[4 * b]);
      acc[4 * b + 1] = fma(w1, xv, acc[4 * b + 1]);
      acc[4 * b + 2] = fma(w2, xv, acc[4 * b + 2]);
      acc[4 * b + 3] = fma(w3, xv, acc[4 * b + 3]);
    }
  }
  if (tail) {
    V wt[4];
    for (int r = 0; r < 4; ++r) wt[r] = V::load_n(w + r * ldw + full, tail);
    for (int b = 0; b < 4; ++b) {
      const V xv = V::load_n(x + b * ldx + full, tail);
      for (int r = 0; r < 4; ++r) acc[4 * b + r] = fma(wt[r], xv, acc[4 * b + r]);
    }
  }
  T sums[16];
  V::lane_sums(acc, sums);
  for (int b = 0; b < 4; ++b)
    for (int r = 0; r < 4; ++r) y[b * ldy + r] = sums[4 * b + r];
}

// y[b*ldy + r] = sum over k < depth of w[r*ldw + k] * x[b*ldx + k], for r < rows, b < count.
// Four rows at a time, each read from memory once and from L1 for the other vectors (in groups
// of four vectors where V has lane_sums: 1.5x at B = 8 to 32, H = 128); every sum runs in the
// same order (lanes, then lane_sum) whichever group its row or its vector falls in.
template <typename V>
void rows_dot(index_t rows, index_t depth, const typename V::T* w, index_t ldw,
              const typename V::T* x, index_t ldx, index_t count, typename V::T* y, index_t ldy) {
  using T = typename V::T;
  constexpr index_t kW = V::kWidth;
  const index_t full = depth - depth % kW, tail = depth - full;
  index_t r = 0;
  index_t grouped = 0;  // vectors [0, grouped) run in groups of four
  if constexpr (HasLaneSums<V>::value) grouped = count - count % 4;
  for (; r + 4 <= rows; r += 4) {
    const T* w0 = w + r * ldw;
    const T *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    if constexpr (HasLaneSums<V>::value) {
      for (index_t b = 0; b < grouped; b += 4)
        rows_dot_4x4<V>(depth, w0, ldw, x + b * ldx, ldx, y + b * ldy + r, ldy);
    }
    for (index_t b = grouped; b < count; ++b) {
      const T* xb = x + b * ldx;
      V a0 = V::set1(T(0)), a1 = a0, a2 = a0, a3 = a0;
      for (index_t k = 0; k < full; k += kW) {
        const V xv = V::load(xb + k);
        a0 = fma(V::load(w0 + k), xv, a0);
        a1 = fma(V::load(w1 + k), xv, a1);
        a2 = fma(V::load(w2 + k), xv, a2);
        a3 = fma(V::load(w3 + k), xv, a3);
      }
      if (tail) {
        const V xv = V::load_n(xb + full, tail);
        a0 = fma(V::load_n(w0 + full, tail), xv, a0);
        a1 = fma(V::load_n(w1 + full, tail), xv, a1);
        a2 = fma(V::load_n(w2 + full, tail), xv, a2);
        a3 = fma(V::load_n(w3 + full, tail), xv, a3);
      }
      T* yb = y + b * ldy + r;
      yb[0] = lane_sum(a0);
      yb[1] = lane_sum(a1);
      yb[2] = lane_sum(a2);
      yb[3] = lane_sum(a3);
    }
  }
  for (; r < rows; ++r) {
    const T* wr = w + r * ldw;
    for (index_t b = 0; b < count; ++b) {
      const T* xb = x + b * ldx;
      V a = V::set1(T(0));
      for (index_t k = 0; k < full; k += kW) a = fma(V::load(wr + k), V::load(xb + k), a);
      if (tail) a = fma(V::load_n(wr + full, tail), V::load_n(xb + full, tail), a);
      y[b * ldy + r] = lane_sum(a);
    }
  }
}

// One block of rows_combine: R rows of y times C vectors of columns from j (the last vector n
// wide when n < kWidth), every m vector loaded once for the R rows.
template <typename V, int R, int C>
RNNFAST_INLINE void combine_block(index_t depth, index_t n, const typename V::T* a, index_t a_rs,
                                  index_t a_ks, const typename V::T* m, index_t ldm,
                                  typename V::T* y, index_t ldy, bool accumulate) {
  using T = typename V::T;
  constexpr index_t kW = V::kWidth;
  V s[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const index_t w = c == C - 1 ? n : kW;
      s[r][c] = accumulate ? load_units<V>(y + r * ldy + c * kW, w) : V::set1(T(0));
    }
  for (index_t k = 0; k < depth; ++k) {
    const T* mk = m + k * ldm;
    V mv[C];
    for (int c = 0; c < C; ++c) mv[c] = load_units<V>(mk + c * kW, c == C - 1 ? n : kW);
    for (int r = 0; r < R; ++r) {
      const V coef = V::set1(a[r * a_rs + k * a_ks]);
      for (int c = 0; c < C; ++c) s[r][c] = fma(coef, mv[c], s[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store_units(s[r][c], y + r * ldy + c * kW, c == C - 1 ? n : kW);
}

// Every row of y for C vectors of columns from j (the last n wide): blocks of four rows, then
// one at a time.
template <typename V, int C>
RNNFAST_INLINE void combine_rows(index_t rows, index_t depth, index_t n, const typename V::T* a,
                                 index_t a_rs, index_t a_ks, const typename V::T* m, index_t ldm,
                                 typename V::T* y, index_t ldy, bool accumulate) {
  index_t i = 0;
  for (; i + 4 <= rows; i += 4)
    combine_block<V, 4, C>(depth, n, a + i * a_rs, a_rs, a_ks, m, ldm, y + i * ldy, ldy,
                           accumulate);
  for (; i < rows; ++i)
    combine_block<V, 1, C>(depth, n, a + i * a_rs, a_rs, a_ks, m, ldm, y + i * ldy, ldy,
                           accumulate);
}

// y[i*ldy + j] = (accumulate ? y[i*ldy + j] : 0) + sum over k < depth, in order, of
// a[i*a_rs + k*a_ks] * m[k*ldm + j], for i < rows, j < cols. Blocks of four rows by four vectors
// of columns (then fewer), so that each row of m is read once for four rows of y (W^T dG for a
// few batch rows read W from L2 once a row before); each value is one chain of FMAs over k
// whatever block or caller's split of the columns it falls in, so results do not depend on who
// computes them.
template <typename V>
void rows_combine(index_t rows, index_t depth, index_t cols, const typename V::T* a, index_t a_rs,
                  index_t a_ks, const typename V::T* m, index_t ldm, typename V::T* y, index_t ldy,
                  bool accumulate) {
  constexpr index_t kW = V::kWidth;
  index_t j = 0;
  for (; j + 4 * kW <= cols; j += 4 * kW)
    combine_rows<V, 4>(rows, depth, kW, a, a_rs, a_ks, m + j, ldm, y + j, ldy, accumulate);
  for (; j < cols; j += kW)
    combine_rows<V, 1>(rows, depth, smaller(kW, cols - j), a, a_rs, a_ks, m + j, ldm, y + j, ldy,
                       accumulate);
}
