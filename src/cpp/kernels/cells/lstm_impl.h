// The LSTM's step, forward and backward (gates i, f, g, o; c_t = f c_{t-1} + i g, h_t = o
// tanh(c_t); optional peepholes and projection h_t = W_hr m_t). Written once against the Vec
// types; included by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Forward ----

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

// ---- Backward ----

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

// ---- Recipe ----

// LSTM's kernels: one-part (a projection's second part, lstm_project and lstm_proj_dh, is the
// stack's, not the cell's: the layer loops call it for any cell whose row says `projection`).
template <typename V>
constexpr kernels::CellKernels<typename V::T> lstm_recipe() {
  kernels::CellKernels<typename V::T> k;
  k.forward = &lstm_forward<V>;
  k.backward = &lstm_backward<V>;
  return k;
}
