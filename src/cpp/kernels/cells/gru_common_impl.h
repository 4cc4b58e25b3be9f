// What both GRU forms share: the mix h_t = (1 - z) n + z h_{t-1} and its gradient. Included by
// kernel_impl.h inside the ISA's namespace, before cells/gru_lbr_impl.h and cells/gru_rb_impl.h.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// ---- Forward ----

// h = (1 - z) * n + z * h_prev
template <typename V>
V gru_mix(V z, V n, V h_prev) {
  using T = typename V::T;
  return fma(z, h_prev, (V::set1(T(1)) - z) * n);
}

// ---- Backward ----

// dan = dh (1 - z)(1 - n^2) and dz = dh (h_prev - n) z (1 - z), for both GRU variants.
template <typename V>
void gru_common_back(V dh, V z, V n, V h_prev, V* dan, V* dz) {
  using T = typename V::T;
  const V one = V::set1(T(1));
  *dan = dh * (one - z) * fnma(n, n, one);
  *dz = dh * (h_prev - n) * z * (one - z);
}
