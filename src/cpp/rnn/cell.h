// What a cell is, decided once, from its row of kernels/cells/cell_list.h: its gates, its state,
// what a training forward keeps for backward. Python reads this table (rnnfast._core.cells())
// instead of deciding it again.
#pragma once
#include <string>

#include "kernels/cells/cell_list.h"  // the Cell enum and its rows
#include "runtime/types.h"

namespace rnnfast {

struct CellInfo {
  const char* name;          // rnn_tanh, rnn_relu, lstm, gru, gru_reset_before
  int gates;                 // G: gate blocks of H rows in W_ih and W_hh (PyTorch's order)
  bool cell_state;           // LSTM's c
  bool extra;                // GRU: one [T, B, H] array more in the tape
  bool two_part;             // reset-before GRU: the W_hn product needs every unit's r first
  bool linear_before_reset;  // GRU: b_hn and W_hn h stay apart from the input side, inside r*(.)
  bool projection;           // takes proj_size and peepholes (LSTM)
  const char* gate_names;    // e.g. "i,f,g,o"
};

const CellInfo& cell_info(Cell cell);
// Throws std::invalid_argument naming `cell` for an unknown name.
Cell parse_cell(const std::string& name);

// The row stride of the tape's gates: G*H values, 16 more when such a row is a multiple of 4 KiB.
// Rows read together at a 4 KiB stride share L1 sets: the backward step's product reads a tile
// of gate-gradient rows at once, and the weight-gradient products had to copy them first.
index_t gates_stride(Cell cell, index_t hidden, index_t value_bytes);

// Values (of value_bytes each) a training forward keeps for one direction of one layer: gates
// [T, B] rows of gates_stride, states [T+1, B, S] (S = proj, or H without one) and LSTM's cell
// states [T+1, B, H], GRU's extra and a projected LSTM's m [T, B, H].
index_t tape_values(Cell cell, index_t steps, index_t batch, index_t hidden, index_t value_bytes,
                    index_t proj);

}  // namespace rnnfast
