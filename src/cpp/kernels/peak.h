// The machine's float32 FMA peak at a thread count: what the hardware can do, against which the
// GEMM and the recurrent layers are measured (rnnfast bench). And the two floors of a batch of
// one: how fast one thread reads weights from its L2, and how long a value takes to go from one
// thread to another and back.
#pragma once

#include "runtime/types.h"

namespace rnnfast::kernels {

// GFLOP/s of independent FMA chains on `threads` threads (each chain an FMA of the active ISA's
// widest float32 vector), best of five runs of about `seconds` / 5 each.
double fma_peak_gflops(int threads, double seconds);

// GB/s at which the calling thread multiplies a float32 matrix of `bytes` (rows of 1 KiB) by a
// vector with the direct step's kernel (rows_dot), the matrix read from L2 when it fits there
// and not in L1: a batch of one's step cannot read its weights faster. Best of five runs of
// about `seconds` / 5 each.
double l2_matvec_gbps(index_t bytes, double seconds);

// Nanoseconds for a counter to go from one thread to another and back, the median of bursts of
// round trips over about `seconds`: the least a step whose threads exchange their state pays.
// NaN when the team has one thread, or when no burst ended within `seconds` (a busy machine's
// scheduler kept one thread off its core: neither thread ever waits longer).
double round_trip_ns(double seconds);

}  // namespace rnnfast::kernels
