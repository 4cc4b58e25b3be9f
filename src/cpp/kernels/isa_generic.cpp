// The portable kernels: baseline compiler flags only.
#define RNNFAST_ISA_NS generic
#define RNNFAST_ISA_ENUM Isa::Generic
#include "kernels/vec_generic.h"
// The Vec types first: kernel_impl.h is written against them.
#include "kernels/kernel_impl.h"
