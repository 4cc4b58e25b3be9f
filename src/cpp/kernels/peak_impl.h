// The hardware's FMA throughput, the peak every figure of the bench is a share of: independent
// chains of vector FMAs, as many as the ISA keeps accumulators (V::kAcc: enough in flight to
// cover the FMA latency on every FMA port), with nothing loaded or stored in the loop. Included
// by kernel_impl.h inside the ISA's namespace.
#if !defined(RNNFAST_ISA_NS)
#error "include from kernel_impl.h, inside an ISA's namespace"
#endif

// `rounds` rounds of V::kAcc FMAs; returns a sum of the chains' values, so the compiler cannot
// drop the work (FMAs are not reassociated without -ffast-math: the chains stay chains).
template <typename V>
typename V::T fma_chains(index_t rounds, typename V::T seed) {
  using T = typename V::T;
  constexpr int kChains = static_cast<int>(V::kAcc);
  V acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = V::set1(seed + T(i));
  const V scale = V::set1(T(0.999)), shift = V::set1(T(1e-3));  // a fixed point near 1
  // Unrolled, so that every chain lives in a register (a loop over acc[] kept them in memory:
  // each FMA waited for a store and a load, a third of the peak).
  for (index_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = fma(acc[i], scale, shift);
  }
  V sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = sum + acc[i];
  T lanes[V::kWidth];
  sum.store(lanes);
  T total = T(0);
  for (index_t j = 0; j < V::kWidth; ++j) total += lanes[j];
  return total;
}
