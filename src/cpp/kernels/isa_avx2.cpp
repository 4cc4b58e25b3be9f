// AVX2 + FMA kernels: this file alone is compiled with -mavx2 -mfma.
#define RNNFAST_ISA_NS avx2
#include "kernels/vec_avx2.h"
// vec_avx2.h first: kernel_impl.h uses its Vec types.
#include "kernels/kernel_impl.h"

namespace rnnfast::kernels::avx2 {
const KernelTable<float>& table_f32() {
  static constexpr KernelTable<float> table = make_table<VecF32>(Isa::Generic);
  return table;
}
const KernelTable<double>& table_f64() {
  static constexpr KernelTable<double> table = make_table<VecF64>(Isa::Generic);
  return table;
}
}  // namespace rnnfast::kernels::avx2
