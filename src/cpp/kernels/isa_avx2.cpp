// AVX2 + FMA kernels: this file alone is compiled with -mavx2 -mfma.
#define RNNFAST_ISA_NS avx2
#define RNNFAST_ISA_ENUM Isa::Avx2
#include "kernels/vec_avx2.h"
// The Vec types first: kernel_impl.h is written against them.
#include "kernels/kernel_impl.h"
