// A matrix read in place, row by row, times a few vectors: the product of a single step with a
// handful of batch rows straight from PyTorch's layout (rnn/direct_step.h), where packing the
// weights first, or checking a packed copy against them, costs more than the product. Included
// by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// y[b*ldy + r] = sum over k < depth of w[r*ldw + k] * x[b*ldx + k], for r < rows, b < count.
// Four rows at a time, each read from memory once and from L1 for the other vectors; every
// sum runs in the same order (lanes, then lane_sum) whichever group its row falls in.
template <typename V>
void rows_dot(index_t rows, index_t depth, const typename V::T* w, index_t ldw,
              const typename V::T* x, index_t ldx, index_t count, typename V::T* y, index_t ldy) {
  using T = typename V::T;
  constexpr index_t kW = V::kWidth;
  const index_t full = depth - depth % kW, tail = depth - full;
  index_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* w0 = w + r * ldw;
    const T *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    for (index_t b = 0; b < count; ++b) {
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
