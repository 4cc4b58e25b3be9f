// The linear-before-reset GRU (PyTorch's, cuDNN's): n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
// one product a step. Forward and backward; included by kernel_impl.h inside the ISA's
// namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Forward ----

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

// ---- Backward ----

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

// ---- Recipe ----

// The linear-before-reset GRU's kernels (PyTorch's GRU): one-part.
template <typename V>
constexpr kernels::CellKernels<typename V::T> gru_recipe() {
  kernels::CellKernels<typename V::T> k;
  k.forward = &gru_forward<V>;
  k.backward = &gru_backward<V>;
  return k;
}
