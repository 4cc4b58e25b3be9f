// The portable kernels: baseline compiler flags only.
#define RNNFAST_ISA_NS generic
#include "kernels/vec_generic.h"
// vec_generic.h first: kernel_impl.h uses its Vec types.
#include "kernels/kernel_impl.h"

namespace rnnfast::kernels::generic {
const KernelTable<float>& table_f32() {
  static constexpr KernelTable<float> table = make_table<VecF32>(Isa::Generic);
  return table;
}
const KernelTable<double>& table_f64() {
  static constexpr KernelTable<double> table = make_table<VecF64>(Isa::Generic);
  return table;
}
}  // namespace rnnfast::kernels::generic
