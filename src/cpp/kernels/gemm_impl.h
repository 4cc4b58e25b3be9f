// The GEMM micro-kernel and B packing, written once against the Vec types and compiled per ISA:
// included by kernel_impl.h, inside the ISA's own namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- GEMM micro-kernel ---------------------------------------------------------------------
// A is read in place through strides, element (r, k) at a[r*rs + k*ks]: a row-major operand
// (rs = lda, ks = 1) or a transposed one (rs = 1, ks = lda) needs no packing (packing A cost as
// much as the multiply-adds when N is small, as in the weight gradients). Packed B: panels of
// 2*kWidth columns, element (k, j) at k*NR + j, consecutive panels b_stride apart. Every C element
// is one accumulator summed over k in ascending order with fused multiply-adds, whatever tile
// shape computes it, so results do not depend on the batch size or the thread split.

template <typename A>
struct AView {
  const A* a;
  index_t rs, ks;
};

// C (+)= A * B for R rows of A and P consecutive B panels, `steps` depth elements of the policy
// Op (kernels/madd_impl.h: one value, or a bf16 pair); `cols` clips the last panel.
template <typename V, typename Op, int R, int P>
void tile(index_t steps, AView<typename Op::A> av, const typename Op::B* b, index_t b_stride,
          typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth, NR = 2 * W;
  V acc[R][2 * P];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 2 * P; ++q) acc[r][q] = V::set1(T(0));
  const typename Op::A* a = av.a;
  for (index_t k = 0; k < steps; ++k, a += av.ks) {
    if constexpr (R == 1) {  // no reuse of b: each feeds its FMA from memory (no spills)
      const auto ar = Op::broadcast(a[0]);
      for (int p = 0; p < P; ++p) {
        acc[0][2 * p] = Op::madd(acc[0][2 * p], ar, Op::load(b + p * b_stride + k * NR));
        acc[0][2 * p + 1] =
            Op::madd(acc[0][2 * p + 1], ar, Op::load(b + p * b_stride + k * NR + W));
      }
    } else {
      typename Op::Weights bv[2 * P];
      for (int p = 0; p < P; ++p) {
        prefetch<NR * sizeof(*b)>(b + p * b_stride + (k + kPrefetchSteps) * NR);
        bv[2 * p] = Op::load(b + p * b_stride + k * NR);
        bv[2 * p + 1] = Op::load(b + p * b_stride + k * NR + W);
      }
      for (int r = 0; r < R; ++r) {
        const auto ar = Op::broadcast(a[r * av.rs]);
        for (int q = 0; q < 2 * P; ++q) acc[r][q] = Op::madd(acc[r][q], ar, bv[q]);
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
template <typename V, typename Op, int R, int P>
void remainder_tile(index_t count, index_t steps, AView<typename Op::A> a, const typename Op::B* b,
                    index_t b_stride, typename V::T* c, index_t ldc, index_t cols,
                    bool accumulate) {
  if constexpr (P > 0) {
    if (count == P) return tile<V, Op, R, P>(steps, a, b, b_stride, c, ldc, cols, accumulate);
    remainder_tile<V, Op, R, P - 1>(count, steps, a, b, b_stride, c, ldc, cols, accumulate);
  }
}

// R rows against every panel: P panels at a time, as many as the accumulator registers allow.
template <typename V, typename Op, int R>
void row_block(index_t steps, AView<typename Op::A> a, const typename Op::B* b, index_t b_stride,
               typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  constexpr int P =
      static_cast<int>(V::kAcc) / (2 * R) > 1 ? static_cast<int>(V::kAcc) / (2 * R) : 1;
  constexpr index_t NR = 2 * V::kWidth;
  const index_t panels = (cols + NR - 1) / NR;
  index_t p = 0;
  for (; p + P <= panels; p += P)
    tile<V, Op, R, P>(steps, a, b + p * b_stride, b_stride, c + p * NR, ldc, cols - p * NR,
                      accumulate);
  if (p < panels)
    remainder_tile<V, Op, R, P - 1>(panels - p, steps, a, b + p * b_stride, b_stride, c + p * NR,
                                    ldc, cols - p * NR, accumulate);
}

template <typename V, typename Op, int R = static_cast<int>(V::kMr)>
void rows_dispatch(index_t rows, index_t steps, AView<typename Op::A> a, const typename Op::B* b,
                   index_t b_stride, typename V::T* c, index_t ldc, index_t cols, bool accumulate) {
  if (rows == R) return row_block<V, Op, R>(steps, a, b, b_stride, c, ldc, cols, accumulate);
  if constexpr (R > 1)
    rows_dispatch<V, Op, R - 1>(rows, steps, a, b, b_stride, c, ldc, cols, accumulate);
}

// Rows in tiles of nearly equal height (a 32-row block: 11, 11, 10, not 12, 12, 8).
template <typename V, typename Op>
void gemm_block_as(index_t steps, index_t rows, index_t cols, const typename Op::A* a, index_t a_rs,
                   index_t a_ks, const typename Op::B* b, index_t b_stride, typename V::T* c,
                   index_t ldc, bool accumulate) {
  const index_t tiles = (rows + V::kMr - 1) / V::kMr;
  const index_t base = rows / tiles, taller = rows % tiles;
  for (index_t i = 0, ir = 0; i < tiles; ++i) {
    const index_t n = base + (i < taller ? 1 : 0);
    rows_dispatch<V, Op>(n, steps, AView<typename Op::A>{a + ir * a_rs, a_rs, a_ks}, b, b_stride,
                         c + ir * ldc, ldc, cols, accumulate);
    ir += n;
  }
}

template <typename V>
void gemm_block(index_t kc, index_t rows, index_t cols, const typename V::T* a, index_t a_rs,
                index_t a_ks, const typename V::T* b, index_t b_stride, typename V::T* c,
                index_t ldc, bool accumulate) {
  gemm_block_as<V, PlainMadd<V>>(kc, rows, cols, a, a_rs, a_ks, b, b_stride, c, ldc, accumulate);
}

// The bf16 product (float tables only): A and B in pairs, `pairs` of them deep.
template <typename V>
void gemm_block_bf16(index_t pairs, index_t rows, index_t cols, const uint32_t* a, index_t a_rs,
                     index_t a_ks, const uint32_t* b, index_t b_stride, typename V::T* c,
                     index_t ldc, bool accumulate) {
  with_bf16<V>([&](auto op) {
    gemm_block_as<V, decltype(op)>(pairs, rows, cols, a, a_rs, a_ks, b, b_stride, c, ldc,
                                   accumulate);
  });
}

// Rows of A (float, row i's depth p at a[i*rs + p*ks]) into bf16 pairs, dst[i*ld + p/2]: rows
// of a row-major A (ks == 1), or columns of one (else rs == 1: a transposed A, the weight
// gradients'; kernels/gemm.cpp passes no other).
template <typename V>
void convert_a_bf16(index_t rows, index_t depth, const float* a, index_t rs, index_t ks,
                    uint32_t* dst, index_t ld) {
  with_bf16<V>([&](auto op) {
    using Op = decltype(op);
    if (ks == 1) {
      for (index_t i = 0; i < rows; ++i) to_bf16_pairs<Op>(a + i * rs, depth, dst + i * ld);
    } else {  // the GEMM's only other A: a transposed one (rs == 1)
      Op::convert_columns(rows, depth, a, ks, dst, ld);
    }
  });
}

// dst[j] = the bf16 pair (even[j], odd[j]) for j < n (odd null: zeros): a row of pairs of a
// packed B (kernels/gemm.h PackedB).
template <typename V>
void pair_rows_bf16(const float* even, const float* odd, index_t n, uint32_t* dst) {
  with_bf16<V>([&](auto op) {
    index_t j = decltype(op)::pair_rows(even, odd, n, dst);
    for (; j < n; ++j) dst[j] = bf16_pair(even[j], odd ? odd[j] : 0.0f);
  });
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
