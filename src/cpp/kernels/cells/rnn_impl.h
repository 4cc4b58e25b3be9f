// The Elman RNN's step, forward and backward: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),
// act tanh or ReLU. Written once against the Vec types (kernels/recurrent_impl.h for the shared
// product and unit loads); included by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Forward ----

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

// ---- Backward ----

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

// ---- Recipe ----

// The Elman cell's kernels: one-part, its activation chosen by `relu`.
template <typename V>
constexpr kernels::CellKernels<typename V::T> rnn_recipe(bool relu) {
  kernels::CellKernels<typename V::T> k;
  k.forward = &rnn_forward<V>;
  k.backward = &rnn_backward<V>;
  k.relu = relu;
  return k;
}
