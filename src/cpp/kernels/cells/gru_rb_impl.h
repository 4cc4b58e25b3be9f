// The reset-before GRU (Cho et al. 2014; ONNX linear_before_reset=0, Keras reset_after=False):
// n = tanh(W_in x + b_in + W_hn (r h) + b_hn), two products a step (r first, then W_hn (r h)).
// Forward and backward; included by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Forward ----

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

// ---- Backward ----

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

// ---- Recipe ----

// The reset-before GRU's kernels: two-part, r and z (and r*h) first, then n from W_hn (r*h);
// backward, the gate gradients first, then dL/d(r*h).
template <typename V>
constexpr kernels::CellKernels<typename V::T> gru_reset_before_recipe() {
  kernels::CellKernels<typename V::T> k;
  k.forward = &gru_rb_gates<V>;
  k.backward = &gru_rb_backward<V>;
  k.forward_part2 = &gru_rb_update<V>;
  k.backward_part2 = &gru_rb_backward_reset<V>;
  return k;
}
