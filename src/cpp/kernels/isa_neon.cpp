// NEON kernels: arm64 only (NEON is part of the base architecture there, so no extra flags).
#define RNNFAST_ISA_NS neon
#define RNNFAST_ISA_ENUM Isa::Neon
#include "kernels/vec_neon.h"
// The Vec types first: kernel_impl.h is written against them.
#include "kernels/kernel_impl.h"
