// Runtime kernel dispatch: the ISAs this build has, which one the CPU (and OS) can run, and the
// table of kernel function pointers for the active one.
#pragma once
#include <string>

#include "threads.h"

namespace rnnfast::kernels {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument for a name that is no ISA.
Isa parse_isa(const std::string& name);
// Compiled into this build, and runnable on this CPU with this OS (CPUID plus XGETBV on x86).
bool isa_supported(Isa isa);
Isa best_isa();
// The ISA every kernel call uses: best_isa() unless select_isa() chose another at start-up.
Isa active_isa();
// Throws std::invalid_argument if `isa` is not supported here. Called once, at import.
void select_isa(Isa isa);

template <typename T>
struct KernelTable {
  Isa isa;
  index_t mr;  // rows of an A panel
  index_t nr;  // columns of a B panel
  // C block (rows x cols, row stride ldc) = (or += when accumulate) packed A * packed B over one
  // K block of depth kc. A: ceil(rows/mr) panels of kc*mr; B: ceil(cols/nr) panels of kc*nr,
  // b_stride apart.
  void (*gemm_block)(index_t kc, index_t rows, index_t cols, const T* a, const T* b,
                     index_t b_stride, T* c, index_t ldc, bool accumulate);
  // One B panel of nr columns from `cols` rows of src (row stride ldb), zero padded:
  // dst[k*nr + j] = src[j*ldb + k].
  void (*pack_b_transposed)(index_t k, index_t cols, const T* src, index_t ldb, T* dst);
  // y = f(x) elementwise over n values; y may alias x.
  void (*exp)(index_t n, const T* x, T* y);
  void (*tanh)(index_t n, const T* x, T* y);
  void (*sigmoid)(index_t n, const T* x, T* y);
};

template <typename T>
const KernelTable<T>& active_kernels();  // of active_isa()

}  // namespace rnnfast::kernels
