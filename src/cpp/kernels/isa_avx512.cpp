// AVX-512 kernels: this file alone (with kernels/amx.cpp) is compiled with -mavx512f
// -mavx512bf16 -mamx-tile -mamx-bf16 (vdpbf16ps is used only under avx512_bf16,
// kernels/madd_impl.h's with_bf16; the tiles only under avx512_amx, kernels/recurrent_impl.h).
#define RNNFAST_ISA_NS avx512
#define RNNFAST_ISA_ENUM Isa::Avx512
#include "kernels/vec_avx512.h"
// The Vec types first: kernel_impl.h is written against them.
#include "kernels/kernel_impl.h"
