// The machine's float32 FMA peak at a thread count: what the hardware can do, against which the
// GEMM and the recurrent layers are measured (rnnfast bench).
#pragma once

namespace rnnfast::kernels {

// GFLOP/s of independent FMA chains on `threads` threads (each chain an FMA of the active ISA's
// widest float32 vector), best of five runs of about `seconds` / 5 each.
double fma_peak_gflops(int threads, double seconds);

}  // namespace rnnfast::kernels
