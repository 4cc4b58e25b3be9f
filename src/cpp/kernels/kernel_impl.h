// The per-ISA kernels, written once against a Vec type (vec_*.h) and compiled once per ISA.
// Include only from an isa_*.cpp after defining RNNFAST_ISA_NS (the namespace) and
// RNNFAST_ISA_ENUM (the Isa value), and including the ISA's vec_*.h: every template lands in that
// ISA's own namespace, so the linker can never hand one ISA's inline code to another.
#if !defined(RNNFAST_ISA_NS) || !defined(RNNFAST_ISA_ENUM)
#error "define RNNFAST_ISA_NS and RNNFAST_ISA_ENUM before including kernel_impl.h"
#endif

#include <type_traits>

#include "kernels/amx.h"
#include "kernels/bf16.h"
#include "kernels/table.h"

// The activations are called per vector from the cell epilogues: always inlined, never calls.
#if defined(__GNUC__)
#define RNNFAST_INLINE inline __attribute__((always_inline))
#else
#define RNNFAST_INLINE inline
#endif

namespace rnnfast::kernels::RNNFAST_ISA_NS {

// No standard-library templates in here: their instantiations are shared between translation
// units, and one compiled with AVX2 flags must never be linked into the generic path.
constexpr index_t smaller(index_t a, index_t b) {
  return a < b ? a : b;
}

// Asks for the cache lines of kBytes at p ahead of their use, each 64-byte line once (a hint:
// never faults, any address). The tiles stream their weights from L2 while A stays in L1, and
// the hardware prefetchers left the FMAs waiting on them (a 12-row GEMM tile: 72% of the FMA
// peak with B from L2, 80% with this).
template <index_t kBytes, typename P>
RNNFAST_INLINE void prefetch(const P* p) {
#if defined(__GNUC__)
  for (index_t byte = 0; byte < kBytes; byte += 64)
    __builtin_prefetch(reinterpret_cast<const char*>(p) + byte, 0, 3);
#else
  (void)p;
#endif
}
// How far ahead the tiles prefetch: depth steps of the weights.
inline constexpr index_t kPrefetchSteps = 8;

#include "kernels/activations_impl.h"
#include "kernels/peak_impl.h"
// The product policies first: the GEMM's and the recurrent step's tiles are written on them.
#include "kernels/madd_impl.h"
// Then the tiles.
#include "kernels/gemm_impl.h"
#include "kernels/recurrent_impl.h"
#include "kernels/rows_dot_impl.h"
// Each cell's recipe: its forward and backward step epilogues and its CellKernels.
#include "kernels/cells/gru_common_impl.h"
#include "kernels/cells/gru_lbr_impl.h"
#include "kernels/cells/gru_rb_impl.h"
#include "kernels/cells/lstm_impl.h"
#include "kernels/cells/rnn_impl.h"

// The table filled field by field, by name: a field added to KernelTable and forgotten here is
// caught by complete() (kernels/table.cpp, at first use), not hidden by a shifted position.
template <typename V>
constexpr KernelTable<typename V::T> make_table(Isa isa) {
  KernelTable<typename V::T> t{};
  t.isa = isa;
  t.mr = V::kMr;
  t.nr = 2 * V::kWidth;
  t.gemm_block = &gemm_block<V>;
  if constexpr (sizeof(typename V::T) == 4) {  // bf16 products: float tables only
    t.gemm_block_bf16 = &gemm_block_bf16<V>;
    t.convert_a_bf16 = &convert_a_bf16<V>;
    t.pair_rows_bf16 = &pair_rows_bf16<V>;
  }
  t.pack_b_transposed = &pack_b_transposed<V>;
  t.rows_dot = &rows_dot<V>;
  t.rows_combine = &rows_combine<V>;
  t.exp = &exp_array<V>;
  t.tanh = &tanh_array<V>;
  t.sigmoid = &sigmoid_array<V>;
  t.width = V::kWidth;
  // Each cell's recipe, from its row of kernels/cells/cell_list.h.
#define RNNFAST_CELL_RECIPE(id, name, gates, cs, extra, two, lbr, proj, names, recipe) \
  t.cells[static_cast<int>(Cell::id)] = recipe;
  RNNFAST_CELLS(RNNFAST_CELL_RECIPE)
#undef RNNFAST_CELL_RECIPE
  t.lstm_project = &lstm_project<V>;
  t.lstm_proj_dh = &lstm_proj_dh<V>;
  t.final_dh = &final_dh<V>;
  t.fma_chain_count = V::kAcc;
  t.fma_chains = &fma_chains<V>;
  return t;
}

// This ISA's tables, found by table.cpp through overloading on the element type.
const KernelTable<float>& table(float) {
  static constexpr KernelTable<float> kTable = make_table<VecF32>(RNNFAST_ISA_ENUM);
  return kTable;
}
const KernelTable<double>& table(double) {
  static constexpr KernelTable<double> kTable = make_table<VecF64>(RNNFAST_ISA_ENUM);
  return kTable;
}

}  // namespace rnnfast::kernels::RNNFAST_ISA_NS
