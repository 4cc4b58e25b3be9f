// Every cell the engine has, one row each. The core's Cell enum, its CellInfo table
// (rnn/cell.cpp), each ISA's kernel table (kernels/kernel_impl.h) and the check that the C API's
// constants agree (capi/capi.cpp) are all generated from these rows.
//
// Adding a cell variant: write its recipe, kernels/cells/<name>_impl.h (the step's forward and
// backward epilogues and a `<name>_recipe<V>()` returning its CellKernels, see rnn_impl.h),
// include it from kernel_impl.h, and add a row here and one in src/rnnfast/_cells.py (the
// Python side: names in torch, ONNX, Keras, the command line; checked against this table by
// tests/test_cells_registry.py). The C API gets a constant in capi/rnnfast.h for the row.
//
// X(id, name, gates, cell_state, extra, two_part, linear_before_reset, projection, gate_names,
//   recipe)
//   gates:               G, blocks of H rows in W_ih and W_hh (PyTorch's order: gate_names)
//   cell_state:          a state c beside h (LSTM)
//   extra:               one [T, B, H] array more in a training forward's tape (GRU)
//   two_part:            a second product needs every unit of the first (reset-before GRU's
//                        W_hn (r*h)): the recipe's part2 kernels run after a barrier
//   linear_before_reset: b_hn and W_hn h stay apart from the input side, inside r*(.)
//   projection:          takes proj_size and peepholes (LSTM's m = W_hr h)
//   recipe:              the ISA's function returning the cell's kernels (expanded in
//                        make_table, where V is the ISA's vector type)
#pragma once

// clang-format off
#define RNNFAST_CELLS(X)                                                                          \
  X(RnnTanh, "rnn_tanh", 1, false, false, false, false, false, "a", rnn_recipe<V>(false))          \
  X(RnnRelu, "rnn_relu", 1, false, false, false, false, false, "a", rnn_recipe<V>(true))           \
  X(Lstm, "lstm", 4, true, false, false, false, true, "i,f,g,o", lstm_recipe<V>())                 \
  X(Gru, "gru", 3, false, true, false, true, false, "r,z,n", gru_recipe<V>())                      \
  X(GruResetBefore, "gru_reset_before", 3, false, true, true, false, false, "r,z,n",              \
    gru_reset_before_recipe<V>())
// clang-format on

namespace rnnfast {

#define RNNFAST_CELL_ID(id, ...) id,
enum class Cell : int { RNNFAST_CELLS(RNNFAST_CELL_ID) };
#undef RNNFAST_CELL_ID

#define RNNFAST_CELL_ONE(...) +1
inline constexpr int kCellCount = 0 RNNFAST_CELLS(RNNFAST_CELL_ONE);
#undef RNNFAST_CELL_ONE

#define RNNFAST_CELL_ENTRY(id, ...) Cell::id,
inline constexpr Cell kCells[] = {RNNFAST_CELLS(RNNFAST_CELL_ENTRY)};
#undef RNNFAST_CELL_ENTRY

}  // namespace rnnfast
