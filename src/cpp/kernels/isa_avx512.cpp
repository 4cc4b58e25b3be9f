// AVX-512F kernels: this file alone is compiled with -mavx512f.
#define RNNFAST_ISA_NS avx512
#include "kernels/vec_avx512.h"
// vec_avx512.h first: kernel_impl.h uses its Vec types.
#include "kernels/kernel_impl.h"

namespace rnnfast::kernels::avx512 {
const KernelTable<float>& table_f32() {
  static constexpr KernelTable<float> table = make_table<VecF32>(Isa::Generic);
  return table;
}
const KernelTable<double>& table_f64() {
  static constexpr KernelTable<double> table = make_table<VecF64>(Isa::Generic);
  return table;
}
}  // namespace rnnfast::kernels::avx512
