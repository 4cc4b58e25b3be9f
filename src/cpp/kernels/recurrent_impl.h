// What every cell's fused step kernels share (arguments and contract in kernels/recurrent.h):
// the recurrent product's register tiles, unit loads and stores, the backward product and the
// last dh. Written once against the Vec types and compiled per ISA: included by kernel_impl.h,
// inside the ISA's own namespace, after the activations and before each cell's recipe
// (kernels/cells/*_impl.h).

// ---- The product: register tiles --------------------------------------------------------------
// A tile is R rows by M groups of G gates: R*M*G accumulators, each one output summed over k in
// ascending order. Shapes per ISA come from its register budget (V::kAcc accumulator vectors).

template <typename V, int G>
struct TileShape {
  static constexpr int kBudget = static_cast<int>(V::kAcc);
  // Many rows: as many as fit with one group (two for a single gate, as the GEMM's tile).
  static constexpr int kRows = G == 1 ? static_cast<int>(V::kMr)
                                      : (kBudget / G > 8 ? 8 : (kBudget / G < 1 ? 1 : kBudget / G));
  static constexpr int kGroups = G == 1 ? 2 : 1;
  // One row (a batch of one, a matrix-vector product): as many groups as fit.
  static constexpr int kGroupsOneRow = kBudget / G > 8 ? 8 : (kBudget / G < 1 ? 1 : kBudget / G);
};

// acc[r][m*G + g] += the product of R rows of A (row r's depth step k at a[r*lda + k]) with the
// weights of M groups (group m's gate g of step k at w + m*w_stride + (k*G + g)*W), `steps`
// depth steps of the policy Op (kernels/madd_impl.h).
template <typename V, typename Op, int G, int R, int M>
RNNFAST_INLINE void rec_accumulate(V (&acc)[R][G * M], const typename Op::A* a, index_t lda,
                                   const typename Op::B* w, index_t w_stride, index_t steps) {
  constexpr index_t W = V::kWidth;
  constexpr int N = G * M;
  for (index_t k = 0; k < steps; ++k) {
    if constexpr (R == 1) {  // no reuse of b: each feeds its FMA from memory (no spills)
      const auto ar = Op::broadcast(a[k]);
      for (int m = 0; m < M; ++m)
        for (int g = 0; g < G; ++g)
          acc[0][m * G + g] =
              Op::madd(acc[0][m * G + g], ar, Op::load(w + m * w_stride + (k * G + g) * W));
    } else {  // b is reused by R rows: loaded once into registers
      typename Op::Weights b[N];
      for (int m = 0; m < M; ++m) {
        prefetch<G * W * sizeof(*w)>(w + m * w_stride + (k + kPrefetchSteps) * G * W);
        for (int g = 0; g < G; ++g) b[m * G + g] = Op::load(w + m * w_stride + (k * G + g) * W);
      }
      for (int r = 0; r < R; ++r) {
        const auto ar = Op::broadcast(a[r * lda + k]);
        for (int j = 0; j < N; ++j) acc[r][j] = Op::madd(acc[r][j], ar, b[j]);
      }
    }
  }
}

// acc = the sums of a one-row tile over the depth, as p asks (kernels::Product::split and part):
// true when acc holds the whole sums (one block, kWhole, kRest), false when they went to
// p.partial (kOwn). One call of rec_accumulate in a loop over the pieces of depth: a call for
// each piece had tripled the kernels' compile time and object size. (One-row tiles only: the
// layers split products of one batch row only, and so the tiles of more rows stay as they were.)
template <typename V, typename Op, int G, int R, int M>
RNNFAST_INLINE bool rec_sums(V (&acc)[R][G * M], const kernels::Product<typename V::T>& p,
                             const typename V::T* a, const typename V::T* w, index_t row,
                             index_t group) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth;
  constexpr int N = G * M;
  const index_t depth = p.depth, split = p.split;
  const bool two = split > 0 && split < depth, whole = p.part == kernels::SumPart::kWhole;
  const bool own = p.part == kernels::SumPart::kOwn;
  // Periods are the backward's (single-gate panels, a gate's units each); else one period.
  const index_t period = G == 1 && two && p.period > 0 && p.period < depth ? p.period : depth;
  const int passes = two && whole ? 2 : 1;  // kWhole: the low block, then the high one
  bool low = whole || p.own_low == own;
  // The sums of one block wait in p.partial: a kOwn call's for kRest, kWhole's low block for its
  // high one.
  T* sums = two ? p.partial + row * p.ld_partial + (group - p.g0) * G * W : nullptr;
  for (int pass = 0; pass < passes; ++pass, low = false) {
    for (index_t k0 = 0; k0 < depth; k0 += period) {
      const index_t from = !two ? 0 : (low ? k0 : k0 + split);
      const index_t to = !two ? depth : (low ? k0 + split : k0 + period);
      rec_accumulate<V, Op, G, R, M>(acc, a + from, p.lda, w + from * G * W, p.w_stride, to - from);
    }
    if (!two) break;
    const bool keep = own || (whole && pass == 0);
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < N; ++j) {
        T* at = sums + r * p.ld_partial + j * W;
        if (keep) {
          acc[r][j].store(at);
          acc[r][j] = V::set1(T(0));
        } else {
          acc[r][j] = acc[r][j] + V::load(at);
        }
      }
    }
  }
  return !own;
}

template <typename V, typename Op, int G, int R, int M, typename Ep>
void rec_tile(const kernels::Product<typename V::T>& p, index_t row, index_t group, const Ep& ep) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth;
  V acc[R][G * M];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < G * M; ++j) acc[r][j] = V::set1(T(0));
  const T* a = p.a + row * p.lda;
  if constexpr (Op::kDepth == 1) {
    const T* w = p.w + group * p.w_stride;
    if constexpr (R == 1) {
      if (!rec_sums<V, Op, G, R, M>(acc, p, a, w, row, group))
        return;  // a kOwn part: its sums wait in p.partial
    } else {
      rec_accumulate<V, Op, G, R, M>(acc, a, p.lda, w, p.w_stride, p.depth);
    }
  } else {  // bf16 pairs: A rounded to pairs a chunk of depth at a time, on the stack
    constexpr index_t kChunk = 64;
    uint32_t pairs[R][kChunk];
    const uint32_t* w = p.w_pairs + group * p.w_stride;
    for (index_t k0 = 0; k0 < p.depth; k0 += 2 * kChunk) {
      const index_t n = smaller(2 * kChunk, p.depth - k0);
      for (int r = 0; r < R; ++r) to_bf16_pairs<Op>(a + r * p.lda + k0, n, pairs[r]);
      rec_accumulate<V, Op, G, R, M>(acc, &pairs[0][0], kChunk, w + (k0 / 2) * G * W, p.w_stride,
                                     (n + 1) / 2);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < M; ++m) ep(row + r, group + m, &acc[r][m * G]);
}

// R-row tiles for the last rows of a block (fewer than a full tile).
template <typename V, typename Op, int G, int R, int M, typename Ep>
void rec_rows(index_t rows, const kernels::Product<typename V::T>& p, index_t row, index_t group,
              const Ep& ep) {
  if (rows == R) return rec_tile<V, Op, G, R, M>(p, row, group, ep);
  if constexpr (R > 1) rec_rows<V, Op, G, R - 1, M>(rows, p, row, group, ep);
}

// One row, the last groups of a block (fewer than a full tile).
template <typename V, typename Op, int G, int M, typename Ep>
void rec_groups(index_t groups, const kernels::Product<typename V::T>& p, index_t group,
                const Ep& ep) {
  if (groups == M) return rec_tile<V, Op, G, 1, M>(p, 0, group, ep);
  if constexpr (M > 1) rec_groups<V, Op, G, M - 1>(groups, p, group, ep);
}

// The product of every row and group of `p` with the policy Op, each tile followed by
// ep(row, group, acc[G]). Groups are the outer loop, so a group's panel stays in cache while
// every row uses it.
template <typename V, typename Op, int G, typename Ep>
void rec_product_as(const kernels::Product<typename V::T>& p, const Ep& ep) {
  using S = TileShape<V, G>;
  if (p.rows == 1) {
    for (index_t g = p.g0; g < p.g1; g += S::kGroupsOneRow)
      rec_groups<V, Op, G, S::kGroupsOneRow>(smaller(S::kGroupsOneRow, p.g1 - g), p, g, ep);
    return;
  }
  // Rows in tiles of nearly equal height (32 rows: 6,6,5,5,5,5, not 6,6,6,6,6,2), so that no
  // tile runs with a fraction of the accumulators.
  const index_t tiles = (p.rows + S::kRows - 1) / S::kRows;
  const index_t base = p.rows / tiles, taller = p.rows % tiles;
  auto each_row_tile = [&](auto run) {
    for (index_t i = 0, r = 0; i < tiles; ++i) {
      const index_t rows = base + (i < taller ? 1 : 0);
      run(r, rows);
      r += rows;
    }
  };
  index_t g = p.g0;
  for (; g + S::kGroups <= p.g1; g += S::kGroups)
    each_row_tile([&](index_t r, index_t rows) {
      rec_rows<V, Op, G, S::kRows, S::kGroups>(rows, p, r, g, ep);
    });
  for (; g < p.g1; ++g)  // a last single group when tiles take two
    each_row_tile(
        [&](index_t r, index_t rows) { rec_rows<V, Op, G, S::kRows, 1>(rows, p, r, g, ep); });
}

// ---- The bf16 product: into a buffer, then the epilogue -----------------------------------
// A bf16 product is computed a block at a time (32 rows, four groups) into `out`, then each
// row's and group's epilogue reads its sums there. The products are instantiated once per gate
// count and policy, not once per cell epilogue as the fused float path is (three policies per
// epilogue had tripled the AVX-512 file's compile time).

inline constexpr index_t kBlockRows = 2 * kernels::kAmxRows, kBlockGroups = 4;

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
inline constexpr index_t kAmxChunk = 256;  // pairs of A rounded at a time, on the stack

// ---- The bf16 product on AMX tiles, beside the previous block's epilogue ---------------------
// The tiles multiply in their own unit while the vector units are free: each step of depth
// below (a few tile products) is followed by tick(), which runs a share of the previous block's
// epilogues (spread evenly over the block's ticks), so that the activations run while the tiles
// do (a block's epilogues had cost about as much as its tiles, one after the other).

// out[r][16 j + n] = (first ? 0 : out) + the sums over `pairs` (a multiple of kAmxDepth) of A's
// row r (`rows` <= 32 rows of pairs at a, lda words apart, zero padded) times column block
// j < blocks of the weights, whose pair row q is at w + (j / gates) * w_stride + (j % gates) *
// 16 + q * gates * 16 (a group's panel of kernels/recurrent.h, 16 lanes, bf16 pairs). A row's
// sums do not depend on the other rows: the bits are the same in a tile of any height.
template <typename Tick>
void amx_panel_product(index_t rows, index_t pairs, const uint32_t* a, index_t lda,
                       const uint32_t* w, index_t w_stride, index_t gates, index_t blocks,
                       bool first, float* out, index_t ldo, const Tick& tick) {
  constexpr index_t R = kernels::kAmxRows;
  const bool two_rows = rows > R;
  // One row tile: C in tiles 0-3 (four column blocks), A in 4, B in 5-7 then 5 again. Two row
  // tiles: C in 0-1 (top) and 2-3 (bottom), A in 4 and 5, B in 6 and 7, so that each block of
  // weights loaded serves both.
  kernels::AmxTileConfig config = kernels::amx_tile_config(two_rows ? R : rows, two_rows ? 6 : 5);
  if (two_rows) config.rows[2] = config.rows[3] = config.rows[5] = static_cast<uint8_t>(rows - R);
  _tile_loadconfig(&config);
  const auto a_bytes = static_cast<long>(lda * 4), w_bytes = static_cast<long>(gates * 16 * 4);
  const auto o_bytes = static_cast<long>(ldo * 4);
  auto b_of = [&](index_t j) { return w + (j / gates) * w_stride + (j % gates) * 16; };
  const index_t per = two_rows ? 2 : 4;  // column blocks a pass
  for (index_t j = 0; j < blocks; j += per) {
    const index_t n = smaller(per, blocks - j);
    float* o = out + j * 16;
    // C tile t's place: column block t % 2 (two rows) or t, rows 16 lower for tiles 2-3.
    auto c_at = [&](int t) { return two_rows ? o + (t / 2) * R * ldo + (t % 2) * 16 : o + t * 16; };
    auto used = [&](int t) { return two_rows ? (t % 2) < n : t < n; };
    if (first) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    } else {
      _tile_loadd(0, c_at(0), o_bytes);
      if (used(1)) _tile_loadd(1, c_at(1), o_bytes);
      if (used(2)) _tile_loadd(2, c_at(2), o_bytes);
      if (used(3)) _tile_loadd(3, c_at(3), o_bytes);
    }
    for (index_t k = 0; k < pairs; k += kernels::kAmxDepth) {
      const index_t q = k * gates * 16;  // pair row k of a block
      if (two_rows) {
        _tile_loadd(4, a + k, a_bytes);
        _tile_loadd(5, a + R * lda + k, a_bytes);
        _tile_loadd(6, b_of(j) + q, w_bytes);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        if (n > 1) {
          _tile_loadd(7, b_of(j + 1) + q, w_bytes);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(3, 5, 7);
        }
      } else {
        _tile_loadd(4, a + k, a_bytes);
        _tile_loadd(5, b_of(j) + q, w_bytes);
        _tile_dpbf16ps(0, 4, 5);
        if (n > 1) {
          _tile_loadd(6, b_of(j + 1) + q, w_bytes);
          _tile_dpbf16ps(1, 4, 6);
        }
        if (n > 2) {
          _tile_loadd(7, b_of(j + 2) + q, w_bytes);
          _tile_dpbf16ps(2, 4, 7);
        }
        if (n > 3) {
          _tile_loadd(5, b_of(j + 3) + q, w_bytes);
          _tile_dpbf16ps(3, 4, 5);
        }
      }
      tick();
    }
    _tile_stored(0, c_at(0), o_bytes);
    if (used(1)) _tile_stored(1, c_at(1), o_bytes);
    if (used(2)) _tile_stored(2, c_at(2), o_bytes);
    if (used(3)) _tile_stored(3, c_at(3), o_bytes);
  }
  _tile_release();
}

// The sums of rows [r0, r0 + rows) and groups [g, g + groups) of `p` on AMX tiles, A rounded to
// pairs a chunk of depth at a time (zero padded to whole tiles of depth; the tiles are `rows`
// high): out[r][(m*G + k)*16 + lane]. tick() as amx_panel_product's.
template <typename V, int G, typename Tick>
void amx_block(const kernels::Product<float>& p, index_t r0, index_t rows, index_t g,
               index_t groups, float* out, index_t ldo, const Tick& tick) {
  constexpr index_t kChunk = kAmxChunk, kLda = kChunk + 16;  // pairs
  alignas(64) uint32_t a[kBlockRows * kLda];
  const index_t pairs = (p.depth + 1) / 2;
  for (index_t c0 = 0; c0 < pairs; c0 += kChunk) {
    const index_t n = smaller(kChunk, pairs - c0), padded = kernels::round_up(n, 16);
    for (index_t r = 0; r < rows; ++r) {
      uint32_t* dst = a + r * kLda;
      with_bf16<V>([&](auto op) {
        to_bf16_pairs<decltype(op)>(p.a + (r0 + r) * p.lda + 2 * c0,
                                    smaller(2 * n, p.depth - 2 * c0), dst);
      });
      for (index_t q = n; q < padded; ++q) dst[q] = 0;
    }
    amx_panel_product(rows, padded, a, kLda, p.w_pairs + g * p.w_stride + c0 * G * 16, p.w_stride,
                      G, groups * G, c0 == 0, out, ldo, tick);
  }
}

// The epilogues of one block of sums (rows x groups at `out`), run a few at a time: ep(row,
// group, sums) for each, in the order rows then groups.
template <typename V, int G, typename Ep>
class PendingEpilogues {
 public:
  explicit PendingEpilogues(const Ep& ep) : ep_(ep) {}
  void start(const float* out, index_t ldo, index_t r0, index_t rows, index_t g, index_t groups) {
    out_ = out;
    ldo_ = ldo;
    r0_ = r0;
    g_ = g;
    groups_ = groups;
    next_ = 0;
    count_ = rows * groups;
  }
  // Spreads what is left over `ticks` calls of run_some.
  void spread_over(index_t ticks) {
    const index_t left = count_ - next_;
    per_tick_ = ticks > 0 ? (left + ticks - 1) / ticks : left;
  }
  RNNFAST_INLINE void run_some() {
    for (index_t i = 0; i < per_tick_ && next_ < count_; ++i) run_next();
  }
  void run_all() {
    while (next_ < count_) run_next();
  }

 private:
  RNNFAST_INLINE void run_next() {
    const index_t r = next_ / groups_, m = next_ % groups_;
    ++next_;
    // The sums are read in place as vectors (`out` is aligned, a gate block is a vector).
    ep_(r0_ + r, g_ + m, reinterpret_cast<const V*>(out_ + r * ldo_ + m * G * V::kWidth));
  }

  const Ep& ep_;
  const float* out_ = nullptr;
  index_t ldo_ = 0, r0_ = 0, g_ = 0, groups_ = 1, next_ = 0, count_ = 0, per_tick_ = 1;
};

// How many times amx_block calls tick() for a block of `rows` and `groups` (G gates) over
// `depth`: once per step of depth (kAmxDepth pairs) and pass over the column blocks.
template <int G>
index_t amx_ticks(index_t rows, index_t groups, index_t depth) {
  const index_t per = rows > kernels::kAmxRows ? 2 : 4, blocks = groups * G;
  constexpr index_t kChunk = kAmxChunk;
  const index_t pairs = (depth + 1) / 2, full = pairs / kChunk, rest = pairs % kChunk;
  const index_t steps = full * (kChunk / kernels::kAmxDepth) +
                        kernels::round_up(rest, kernels::kAmxDepth) / kernels::kAmxDepth;
  return (blocks + per - 1) / per * steps;
}

// Every block of `p` on tiles, double buffered: while block b multiplies, block b-1's epilogues
// run (`out` holds two blocks of kBlockRows rows, ldo floats apart).
template <typename V, int G, typename Ep>
void amx_product_bf16(const kernels::Product<float>& p, const Ep& ep, float* out, index_t ldo) {
  PendingEpilogues<V, G, Ep> pending(ep);
  const auto tick = [&] { pending.run_some(); };
  int half = 0;
  for (index_t r0 = 0; r0 < p.rows; r0 += kBlockRows) {
    const index_t rows = smaller(kBlockRows, p.rows - r0);
    for (index_t g = p.g0; g < p.g1; g += kBlockGroups) {
      const index_t groups = smaller(kBlockGroups, p.g1 - g);
      float* block = out + half * kBlockRows * ldo;
      pending.spread_over(amx_ticks<G>(rows, groups, p.depth));
      amx_block<V, G>(p, r0, rows, g, groups, block, ldo, tick);
      pending.run_all();
      pending.start(block, ldo, r0, rows, g, groups);
      half ^= 1;
    }
  }
  pending.run_all();
}
#endif

// The same sums with vector instructions (vdpbf16ps, or widening), in the fused path's tiles.
template <typename V, int G>
void vector_block(const kernels::Product<float>& p, index_t r0, index_t rows, index_t g,
                  index_t groups, float* out, index_t ldo) {
  constexpr index_t W = V::kWidth;
  kernels::Product<float> sub = p;
  sub.a = p.a + r0 * p.lda;
  sub.rows = rows;
  sub.g0 = g;
  sub.g1 = g + groups;
  auto keep = [&](index_t r, index_t grp, const V* acc) {
    for (int k = 0; k < G; ++k) acc[k].store(out + r * ldo + ((grp - g) * G + k) * W);
  };
  with_bf16<V>([&](auto op) { rec_product_as<V, decltype(op), G>(sub, keep); });
}

template <typename V, int G, typename Ep>
void rec_product_bf16(const kernels::Product<float>& p, const Ep& ep) {
  constexpr index_t W = V::kWidth, kLdo = kBlockGroups * G * W;
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
  // Under avx512_amx every bf16 product is on tiles, whatever the rows: a kernel chosen by the
  // rows a thread gets would make the bits depend on the batch and the thread split.
  if (kernels::amx_active()) {
    alignas(64) float out[2 * kBlockRows * kLdo];
    return amx_product_bf16<V, G>(p, ep, out, kLdo);
  }
#endif
  alignas(64) float out[kBlockRows * kLdo];
  for (index_t r0 = 0; r0 < p.rows; r0 += kBlockRows) {
    const index_t rows = smaller(kBlockRows, p.rows - r0);
    for (index_t g = p.g0; g < p.g1; g += kBlockGroups) {
      const index_t groups = smaller(kBlockGroups, p.g1 - g);
      vector_block<V, G>(p, r0, rows, g, groups, out, kLdo);
      // The sums are read in place as vectors (`out` is aligned, a gate block is a vector):
      // copying them into a V array became a memmove call a gate (GCC's loop distribution).
      for (index_t r = 0; r < rows; ++r)
        for (index_t m = 0; m < groups; ++m)
          ep(r0 + r, g + m, reinterpret_cast<const V*>(out + r * kLdo + m * G * W));
    }
  }
}

// The product in the weights' format: float panels (p.w), fused with the epilogue, or bf16
// pairs (p.w_pairs, float only), through a buffer.
template <typename V, int G, typename Ep>
void rec_product(const kernels::Product<typename V::T>& p, const Ep& ep) {
  if constexpr (sizeof(typename V::T) == 4) {
    if (p.w_pairs) return rec_product_bf16<V, G>(p, ep);
  }
  rec_product_as<V, PlainMadd<V>, G>(p, ep);
}

// ---- Loads and stores of a group's units: whole vectors, or the first n of the last group ---
// These and the epilogues' helpers below are always inlined: every vector register is
// caller-saved, so a call inside an epilogue spilled its live vectors around it (GCC had kept
// pre_activation, write_state and gather_dh out of line).

template <typename V>
RNNFAST_INLINE V load_units(const typename V::T* src, index_t n) {
  return n == V::kWidth ? V::load(src) : V::load_n(src, n);
}
template <typename V>
RNNFAST_INLINE void store_units(V v, typename V::T* dst, index_t n) {
  if (n == V::kWidth) {
    v.store(dst);
  } else {
    v.store_n(dst, n);
  }
}

// Where a group's units start, and how many there are (fewer in the last group).
struct Units {
  index_t u, n;
};
template <typename V>
RNNFAST_INLINE Units units_of(index_t group, index_t hidden) {
  const index_t u = group * V::kWidth;
  return {u, smaller(V::kWidth, hidden - u)};
}

// An ended sequence: the state is carried, the output and the tape's gates are zero.
template <typename V, int G>
void carry_row(const kernels::ForwardStep<typename V::T>& s, index_t r, Units un) {
  using T = typename V::T;
  const index_t hd = s.p.hidden, at = r * hd + un.u;
  const V zero = V::set1(T(0));
  // (A projected LSTM's h is carried by its second part; m of an ended row is zero.)
  store_units(s.project ? zero : load_units<V>(s.h_prev + at, un.n), s.h + at, un.n);
  if (s.c) store_units(load_units<V>(s.c_prev + at, un.n), s.c + at, un.n);
  if (s.y) store_units(zero, s.y + r * s.ldy + un.u, un.n);
  if (!s.keep_gates) return;
  T* gates = s.gates + r * s.ld_gates + un.u;
  for (int k = 0; k < G; ++k) store_units(zero, gates + k * hd, un.n);
}

// Pre-activation of gate k: recurrent product + input projection + bias.
template <typename V>
RNNFAST_INLINE V pre_activation(const kernels::ForwardStep<typename V::T>& s, V acc,
                                const typename V::T* gates, int k, Units un) {
  const index_t hd = s.p.hidden;
  V a = acc + load_units<V>(gates + k * hd, un.n);
  if (s.bias) a = a + load_units<V>(s.bias + k * hd + un.u, un.n);
  return a;
}

template <typename V>
RNNFAST_INLINE void write_state(const kernels::ForwardStep<typename V::T>& s, index_t r, Units un,
                                V h) {
  store_units(h, s.h + r * s.p.hidden + un.u, un.n);
  if (s.y) store_units(h, s.y + r * s.ldy + un.u, un.n);
}

// ---- Backward epilogues -----------------------------------------------------------------------

// The product of a backward step, or none (the first step of BPTT has no later step).
template <typename V, typename Ep>
void back_product(const kernels::BackwardStep<typename V::T>& s, const Ep& ep) {
  using T = typename V::T;
  if (s.product) return rec_product<V, 1>(s.p, ep);
  const V zero[1] = {V::set1(T(0))};
  const index_t groups = s.p.g1 - s.p.g0;
  for (index_t g = 0; g < groups; ++g)
    for (index_t r = 0; r < s.p.rows; ++r) ep(r, s.p.g0 + g, zero);
}

// dh_t = acc + direct + dy_t. False (and the gradient passed straight through, the gate gradients
// zero) for an ended sequence.
template <typename V, int G>
RNNFAST_INLINE bool gather_dh(const kernels::BackwardStep<typename V::T>& s, index_t r, Units un,
                              V acc, V* dh) {
  using T = typename V::T;
  const index_t hd = s.p.hidden, at = r * hd + un.u;
  *dh = acc + load_units<V>(s.direct + at, un.n);
  if (!s.active[r]) {
    store_units(*dh, s.direct + at, un.n);
    const V zero = V::set1(T(0));
    if (s.dh_out) store_units(zero, s.dh_out + at, un.n);
    T* dg = s.dg + r * s.ld_gates + un.u;
    for (int k = 0; k < G; ++k) store_units(zero, dg + k * hd, un.n);
    if (s.dg_n) store_units(zero, s.dg_n + at, un.n);
    return false;
  }
  if (s.dy) *dh = *dh + load_units<V>(s.dy + r * s.ldy + un.u, un.n);
  if (s.dh_out) store_units(*dh, s.dh_out + at, un.n);
  return true;
}

// After the first step of the sequence: dh0 = dG_0 W_hh + direct.
template <typename V>
void final_dh(const kernels::BackwardStep<typename V::T>& s) {
  const index_t hd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    const index_t at = r * hd + un.u;
    store_units(acc[0] + load_units<V>(s.direct + at, un.n), s.dh0 + at, un.n);
  });
}
