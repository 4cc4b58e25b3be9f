// The fused recurrent step kernels (arguments and contract in kernels/recurrent.h), written once
// against the Vec types and compiled per ISA: included by kernel_impl.h, inside the ISA's own
// namespace, after the activations.

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

template <typename V, int G, int R, int M, typename Ep>
void rec_tile(const kernels::Product<typename V::T>& p, index_t row, index_t group, const Ep& ep) {
  using T = typename V::T;
  constexpr index_t W = V::kWidth;
  constexpr int N = G * M;
  V acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = V::set1(T(0));
  const T* a = p.a + row * p.lda;
  const T* w = p.w + group * p.w_stride;
  for (index_t k = 0; k < p.depth; ++k) {
    if constexpr (R == 1) {  // no reuse of b: each feeds its FMA from memory (no spills)
      const V ar = V::set1(a[k]);
      for (int m = 0; m < M; ++m)
        for (int g = 0; g < G; ++g)
          acc[0][m * G + g] =
              fma(ar, V::load(w + m * p.w_stride + (k * G + g) * W), acc[0][m * G + g]);
    } else {  // b is reused by R rows: loaded once into registers
      V b[N];
      for (int m = 0; m < M; ++m)
        for (int g = 0; g < G; ++g) b[m * G + g] = V::load(w + m * p.w_stride + (k * G + g) * W);
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(a[r * p.lda + k]);
        for (int j = 0; j < N; ++j) acc[r][j] = fma(ar, b[j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < M; ++m) ep(row + r, group + m, &acc[r][m * G]);
}

// R-row tiles for the last rows of a block (fewer than a full tile).
template <typename V, int G, int R, int M, typename Ep>
void rec_rows(index_t rows, const kernels::Product<typename V::T>& p, index_t row, index_t group,
              const Ep& ep) {
  if (rows == R) return rec_tile<V, G, R, M>(p, row, group, ep);
  if constexpr (R > 1) rec_rows<V, G, R - 1, M>(rows, p, row, group, ep);
}

// One row, the last groups of a block (fewer than a full tile).
template <typename V, int G, int M, typename Ep>
void rec_groups(index_t groups, const kernels::Product<typename V::T>& p, index_t group,
                const Ep& ep) {
  if (groups == M) return rec_tile<V, G, 1, M>(p, 0, group, ep);
  if constexpr (M > 1) rec_groups<V, G, M - 1>(groups, p, group, ep);
}

// The product of every row and group of `p`, each tile followed by ep(row, group, acc[G]).
// Groups are the outer loop, so a group's panel stays in cache while every row uses it.
template <typename V, int G, typename Ep>
void rec_product(const kernels::Product<typename V::T>& p, const Ep& ep) {
  using S = TileShape<V, G>;
  if (p.rows == 1) {
    for (index_t g = p.g0; g < p.g1; g += S::kGroupsOneRow)
      rec_groups<V, G, S::kGroupsOneRow>(smaller(S::kGroupsOneRow, p.g1 - g), p, g, ep);
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
    each_row_tile(
        [&](index_t r, index_t rows) { rec_rows<V, G, S::kRows, S::kGroups>(rows, p, r, g, ep); });
  for (; g < p.g1; ++g)  // a last single group when tiles take two
    each_row_tile([&](index_t r, index_t rows) { rec_rows<V, G, S::kRows, 1>(rows, p, r, g, ep); });
}

// ---- Loads and stores of a group's units: whole vectors, or the first n of the last group ---

template <typename V>
V load_units(const typename V::T* src, index_t n) {
  return n == V::kWidth ? V::load(src) : V::load_n(src, n);
}
template <typename V>
void store_units(V v, typename V::T* dst, index_t n) {
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
Units units_of(index_t group, index_t hidden) {
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
V pre_activation(const kernels::ForwardStep<typename V::T>& s, V acc, const typename V::T* gates,
                 int k, Units un) {
  const index_t hd = s.p.hidden;
  V a = acc + load_units<V>(gates + k * hd, un.n);
  if (s.bias) a = a + load_units<V>(s.bias + k * hd + un.u, un.n);
  return a;
}

template <typename V>
void write_state(const kernels::ForwardStep<typename V::T>& s, index_t r, Units un, V h) {
  store_units(h, s.h + r * s.p.hidden + un.u, un.n);
  if (s.y) store_units(h, s.y + r * s.ldy + un.u, un.n);
}

// ---- Forward epilogues ------------------------------------------------------------------------

template <typename V>
void rnn_forward(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  rec_product<V, 1>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, s.p.hidden);
    if (!s.active[r]) return carry_row<V, 1>(s, r, un);
    T* gates = s.gates + r * s.ld_gates + un.u;
    const V a = pre_activation<V>(s, acc[0], gates, 0, un);
    const V zero = V::set1(T(0));
    // ReLU: a <= 0 ? 0 : a, so that NaN stays NaN (as in PyTorch).
    const V h = s.relu ? select_ge(zero, a, zero, a) : tanh_v(a);
    if (s.keep_gates) store_units(h, gates, un.n);
    write_state(s, r, un, h);
  });
}

template <typename V>
void lstm_forward(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  rec_product<V, 4>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    if (!s.active[r]) return carry_row<V, 4>(s, r, un);
    T* gates = s.gates + r * s.ld_gates + un.u;
    const index_t at = r * hd + un.u;
    const V c_prev = load_units<V>(s.c_prev + at, un.n);
    V a_i = pre_activation<V>(s, acc[0], gates, 0, un);
    V a_f = pre_activation<V>(s, acc[1], gates, 1, un);
    V a_o = pre_activation<V>(s, acc[3], gates, 3, un);
    if (s.peep) {  // i and f look at c_{t-1}
      a_i = fma(load_units<V>(s.peep + un.u, un.n), c_prev, a_i);
      a_f = fma(load_units<V>(s.peep + hd + un.u, un.n), c_prev, a_f);
    }
    const V i = sigmoid_v(a_i);
    const V f = sigmoid_v(a_f);
    const V g = tanh_v(pre_activation<V>(s, acc[2], gates, 2, un));
    const V c = fma(f, c_prev, i * g);
    if (s.peep) a_o = fma(load_units<V>(s.peep + 2 * hd + un.u, un.n), c, a_o);  // o sees c_t
    const V o = sigmoid_v(a_o);
    const V h = o * tanh_v(c);
    if (s.keep_gates) {
      store_units(i, gates, un.n);
      store_units(f, gates + hd, un.n);
      store_units(g, gates + 2 * hd, un.n);
      store_units(o, gates + 3 * hd, un.n);
    }
    store_units(c, s.c + at, un.n);
    write_state(s, r, un, h);
  });
}

// Projected LSTM, second part: h = m W_hr^T over groups of P (p.hidden = P, a = m).
template <typename V>
void lstm_project(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t pd = s.p.hidden;
  rec_product<V, 1>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, pd);
    if (!s.active[r]) {
      store_units(load_units<V>(s.h_prev + r * pd + un.u, un.n), s.h + r * pd + un.u, un.n);
      if (s.y) store_units(V::set1(T(0)), s.y + r * s.ldy + un.u, un.n);
      return;
    }
    write_state(s, r, un, acc[0]);
  });
}

// h = (1 - z) * n + z * h_prev
template <typename V>
V gru_mix(V z, V n, V h_prev) {
  using T = typename V::T;
  return fma(z, h_prev, (V::set1(T(1)) - z) * n);
}

// Linear-before-reset GRU: n = tanh(x_n + b_in + r * (W_hn h + b_hn)).
template <typename V>
void gru_forward(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  rec_product<V, 3>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    if (!s.active[r]) return carry_row<V, 3>(s, r, un);
    T* gates = s.gates + r * s.ld_gates + un.u;
    const index_t at = r * hd + un.u;
    const V rg = sigmoid_v(pre_activation<V>(s, acc[0], gates, 0, un));
    const V z = sigmoid_v(pre_activation<V>(s, acc[1], gates, 1, un));
    const V hn = s.bias_hn ? acc[2] + load_units<V>(s.bias_hn + un.u, un.n) : acc[2];
    V xn = load_units<V>(gates + 2 * hd, un.n);
    if (s.bias) xn = xn + load_units<V>(s.bias + 2 * hd + un.u, un.n);
    const V n = tanh_v(fma(rg, hn, xn));
    const V h = gru_mix(z, n, load_units<V>(s.h_prev + at, un.n));
    if (s.keep_gates) {
      store_units(rg, gates, un.n);
      store_units(z, gates + hd, un.n);
      store_units(n, gates + 2 * hd, un.n);
    }
    if (s.extra) store_units(hn, s.extra + at, un.n);
    write_state(s, r, un, h);
  });
}

// Reset-before GRU, first part (the product over the r and z blocks): r, z and r * h_prev.
template <typename V>
void gru_rb_gates(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  rec_product<V, 2>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    const index_t at = r * hd + un.u;
    T* gates = s.gates + r * s.ld_gates + un.u;
    if (!s.active[r]) {
      const V zero = V::set1(T(0));
      if (s.keep_gates) store_units(zero, gates, un.n);
      store_units(zero, gates + hd, un.n);
      store_units(zero, s.extra + at, un.n);  // W_hn (r*h) of this row is then zero
      return;
    }
    const V rg = sigmoid_v(pre_activation<V>(s, acc[0], gates, 0, un));
    const V z = sigmoid_v(pre_activation<V>(s, acc[1], gates, 1, un));
    if (s.keep_gates) store_units(rg, gates, un.n);
    store_units(z, gates + hd, un.n);  // the second part reads it
    store_units(rg * load_units<V>(s.h_prev + at, un.n), s.extra + at, un.n);
  });
}

// Reset-before GRU, second part (the product W_hn (r*h)): n = tanh(x_n + W_hn (r*h) + b_n), h.
template <typename V>
void gru_rb_update(const kernels::ForwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  rec_product<V, 1>(s.p, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    const index_t at = r * hd + un.u;
    T* gates = s.gates + r * s.ld_gates + un.u;
    if (!s.active[r]) {
      store_units(load_units<V>(s.h_prev + at, un.n), s.h + at, un.n);
      if (s.y) store_units(V::set1(T(0)), s.y + r * s.ldy + un.u, un.n);
      if (s.keep_gates) store_units(V::set1(T(0)), gates + 2 * hd, un.n);
      return;
    }
    const V n = tanh_v(pre_activation<V>(s, acc[0], gates, 2, un));
    const V z = load_units<V>(gates + hd, un.n);
    if (s.keep_gates) store_units(n, gates + 2 * hd, un.n);
    write_state(s, r, un, gru_mix(z, n, load_units<V>(s.h_prev + at, un.n)));
  });
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
bool gather_dh(const kernels::BackwardStep<typename V::T>& s, index_t r, Units un, V acc, V* dh) {
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

template <typename V>
void rnn_backward(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    V dh;
    if (!gather_dh<V, 1>(s, r, un, acc[0], &dh)) return;
    const index_t at = r * hd + un.u;
    const V h = load_units<V>(s.h + at, un.n);
    const V zero = V::set1(T(0)), one = V::set1(T(1));
    // tanh' = 1 - h^2; relu' = 0 where h <= 0, else 1 (NaN included, as in PyTorch).
    const V slope = s.relu ? select_ge(zero, h, zero, one) : fnma(h, h, one);
    store_units(dh * slope, s.dg + r * s.ld_gates + un.u, un.n);
    store_units(zero, s.direct + at, un.n);
  });
}

template <typename V>
void lstm_backward(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    V dh = acc[0];  // projected: dL/dm
    if (s.projected && !s.active[r]) {
      T* dg = s.dg + r * s.ld_gates + un.u;
      for (int k = 0; k < 4; ++k) store_units(V::set1(T(0)), dg + k * hd, un.n);
      if (s.dc_out) store_units(V::set1(T(0)), s.dc_out + r * hd + un.u, un.n);
      return;
    }
    if (!s.projected && !gather_dh<V, 4>(s, r, un, acc[0], &dh)) {
      if (s.dc_out) store_units(V::set1(T(0)), s.dc_out + r * hd + un.u, un.n);
      return;
    }
    const index_t at = r * hd + un.u;
    const T* gates = s.gates + r * s.ld_gates + un.u;
    const V i = load_units<V>(gates, un.n), f = load_units<V>(gates + hd, un.n);
    const V g = load_units<V>(gates + 2 * hd, un.n), o = load_units<V>(gates + 3 * hd, un.n);
    const V one = V::set1(T(1));
    const V tc = tanh_v(load_units<V>(s.c + at, un.n));
    const V da_o = dh * tc * o * (one - o);
    V dct = fma(dh * o, fnma(tc, tc, one), load_units<V>(s.dc + at, un.n));
    if (s.peep) dct = fma(da_o, load_units<V>(s.peep + 2 * hd + un.u, un.n), dct);
    if (s.dc_out) store_units(dct, s.dc_out + at, un.n);
    T* dg = s.dg + r * s.ld_gates + un.u;
    const V c_prev = load_units<V>(s.c_prev + at, un.n);
    const V da_i = dct * g * i * (one - i);
    const V da_f = dct * c_prev * f * (one - f);
    store_units(da_i, dg, un.n);
    store_units(da_f, dg + hd, un.n);
    store_units(dct * i * fnma(g, g, one), dg + 2 * hd, un.n);
    store_units(da_o, dg + 3 * hd, un.n);
    V dc_prev = dct * f;
    if (s.peep) {  // c_{t-1} also reached i and f
      dc_prev = fma(da_i, load_units<V>(s.peep + un.u, un.n), dc_prev);
      dc_prev = fma(da_f, load_units<V>(s.peep + hd + un.u, un.n), dc_prev);
    }
    store_units(dc_prev, s.dc + at, un.n);
    if (!s.projected) store_units(V::set1(T(0)), s.direct + at, un.n);
  });
}

// Projected LSTM, backward first part: dh = acc + direct + dy over groups of P (p.hidden = P),
// written to dg (the step's row of dL/dh, [rows, P] at ld_gates) for the second part and for
// W_hr's gradient; zero there for an ended row, whose dh passes through in direct.
template <typename V>
void lstm_proj_dh(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t pd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, pd);
    V dh;
    if (!gather_dh<V, 1>(s, r, un, acc[0], &dh)) return;
    store_units(dh, s.dg + r * s.ld_gates + un.u, un.n);
    store_units(V::set1(T(0)), s.direct + r * pd + un.u, un.n);
  });
}

// dan = dh (1 - z)(1 - n^2) and dz = dh (h_prev - n) z (1 - z), for both GRU variants.
template <typename V>
void gru_common_back(V dh, V z, V n, V h_prev, V* dan, V* dz) {
  using T = typename V::T;
  const V one = V::set1(T(1));
  *dan = dh * (one - z) * fnma(n, n, one);
  *dz = dh * (h_prev - n) * z * (one - z);
}

template <typename V>
void gru_backward(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    V dh;
    if (!gather_dh<V, 3>(s, r, un, acc[0], &dh)) return;
    const index_t at = r * hd + un.u;
    const T* gates = s.gates + r * s.ld_gates + un.u;
    const V rg = load_units<V>(gates, un.n), z = load_units<V>(gates + hd, un.n);
    const V n = load_units<V>(gates + 2 * hd, un.n);
    V dan, dz;
    gru_common_back(dh, z, n, load_units<V>(s.h_prev + at, un.n), &dan, &dz);
    const V hn = load_units<V>(s.extra + at, un.n);  // W_hn h + b_hn
    T* dg = s.dg + r * s.ld_gates + un.u;
    store_units(dan * hn * rg * (V::set1(T(1)) - rg), dg, un.n);
    store_units(dz, dg + hd, un.n);
    store_units(dan * rg, dg + 2 * hd, un.n);  // the recurrent side: r * (W_hn h + b_hn)
    store_units(dan, s.dg_n + at, un.n);       // the input side
    store_units(dh * z, s.direct + at, un.n);
  });
}

// Reset-before GRU, first part: dz, dn and dh*z (the product is over the r and z blocks of the
// later step's gradients; r*h's gradient comes second, once every unit's dn is known).
template <typename V>
void gru_rb_backward(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  back_product<V>(s, [&](index_t r, index_t group, const V* acc) {
    const Units un = units_of<V>(group, hd);
    V dh;
    if (!gather_dh<V, 3>(s, r, un, acc[0], &dh)) return;
    const index_t at = r * hd + un.u;
    const T* gates = s.gates + r * s.ld_gates + un.u;
    const V z = load_units<V>(gates + hd, un.n), n = load_units<V>(gates + 2 * hd, un.n);
    V dan, dz;
    gru_common_back(dh, z, n, load_units<V>(s.h_prev + at, un.n), &dan, &dz);
    T* dg = s.dg + r * s.ld_gates + un.u;
    store_units(dz, dg + hd, un.n);
    store_units(dan, dg + 2 * hd, un.n);
    store_units(dh * z, s.direct + at, un.n);
  });
}

// Reset-before GRU, second part: acc = dL/d(r*h) = dn W_hn; dr and dh_prev's share through r*h.
template <typename V>
void gru_rb_backward_reset(const kernels::BackwardStep<typename V::T>& s) {
  using T = typename V::T;
  const index_t hd = s.p.hidden;
  rec_product<V, 1>(s.p, [&](index_t r, index_t group, const V* acc) {
    if (!s.active[r]) return;  // the first part passed it through
    const Units un = units_of<V>(group, hd);
    const index_t at = r * hd + un.u;
    const V rg = load_units<V>(s.gates + r * s.ld_gates + un.u, un.n);
    const V d_rh = acc[0];
    const V hp = load_units<V>(s.h_prev + at, un.n);
    store_units(d_rh * hp * rg * (V::set1(T(1)) - rg), s.dg + r * s.ld_gates + un.u, un.n);
    store_units(fma(d_rh, rg, load_units<V>(s.direct + at, un.n)), s.direct + at, un.n);
  });
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
