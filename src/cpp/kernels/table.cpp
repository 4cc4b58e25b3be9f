#include "kernels/table.h"

#include <stdexcept>

#include "kernels/amx.h"
#include "kernels/bf16.h"

#if defined(__x86_64__) || defined(_M_X64)
#define RNNFAST_X86 1
#elif defined(__aarch64__)
#define RNNFAST_ARM64 1
#endif

namespace rnnfast::kernels {

// Each ISA's tables, defined in its own isa_*.cpp (kernel_impl.h).
namespace generic {
const KernelTable<float>& table(float);
const KernelTable<double>& table(double);
}  // namespace generic
#ifdef RNNFAST_X86
namespace avx2 {
const KernelTable<float>& table(float);
const KernelTable<double>& table(double);
}  // namespace avx2
namespace avx512 {
const KernelTable<float>& table(float);
const KernelTable<double>& table(double);
}  // namespace avx512
#endif
#ifdef RNNFAST_ARM64
namespace neon {
const KernelTable<float>& table(float);
const KernelTable<double>& table(double);
}  // namespace neon
#endif

// Every table this build has, checked once: a kernel make_table left unset fails the first
// call loudly instead of jumping through a null pointer.
template <typename T>
bool all_complete() {
  bool ok = complete(generic::table(T()));
#ifdef RNNFAST_X86
  ok = ok && complete(avx2::table(T())) && complete(avx512::table(T()));
#endif
#ifdef RNNFAST_ARM64
  ok = ok && complete(neon::table(T()));
#endif
  return ok;
}

template <typename T>
const KernelTable<T>& active_kernels() {
  static const bool kComplete = all_complete<T>();
  if (!kComplete) throw std::logic_error("kernel table: make_table left a kernel unset");
  switch (active_isa()) {
#ifdef RNNFAST_X86
    case Isa::Avx512Amx:   // the same kernels; bf16 GEMM blocks on AMX tiles (amx_active())
    case Isa::Avx512Bf16:  // the same kernels; bf16 products pick vdpbf16ps (bf16_native())
    case Isa::Avx512:
      return avx512::table(T());
    case Isa::Avx2:
      return avx2::table(T());
#endif
#ifdef RNNFAST_ARM64
    case Isa::Neon:
      return neon::table(T());
#endif
    default:
      return generic::table(T());
  }
}

bool bf16_native() {
  const Isa isa = active_isa();
  return isa == Isa::Avx512Bf16 || isa == Isa::Avx512Amx;
}

bool amx_active() {
  return active_isa() == Isa::Avx512Amx;
}

template const KernelTable<float>& active_kernels<float>();
template const KernelTable<double>& active_kernels<double>();

}  // namespace rnnfast::kernels
