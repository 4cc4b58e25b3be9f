// AVX-512F kernels: this file alone is compiled with -mavx512f.
#define RNNFAST_ISA_NS avx512
#define RNNFAST_ISA_ENUM Isa::Avx512
#include "kernels/vec_avx512.h"
// The Vec types first: kernel_impl.h is written against them.
#include "kernels/kernel_impl.h"
