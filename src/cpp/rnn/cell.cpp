#include "rnn/cell.h"

#include <stdexcept>

namespace rnnfast {

const CellInfo& cell_info(Cell cell) {
  static const CellInfo kInfo[] = {
      {"rnn_tanh", 1, false, false, false, false, "a"},
      {"rnn_relu", 1, false, false, false, false, "a"},
      {"lstm", 4, true, false, false, false, "i,f,g,o"},
      {"gru", 3, false, true, false, true, "r,z,n"},
      {"gru_reset_before", 3, false, true, true, false, "r,z,n"},
  };
  return kInfo[static_cast<int>(cell)];
}

Cell parse_cell(const std::string& name) {
  for (Cell cell : kCells)
    if (name == cell_info(cell).name) return cell;
  throw std::invalid_argument(
      "cell: expected rnn_tanh, rnn_relu, lstm, gru or gru_reset_before, got '" + name + "'");
}

index_t gates_stride(Cell cell, index_t hidden, index_t value_bytes) {
  const index_t gh = cell_info(cell).gates * hidden;
  return gh * value_bytes % 4096 == 0 ? gh + 16 : gh;
}

index_t tape_values(Cell cell, index_t steps, index_t batch, index_t hidden, index_t value_bytes,
                    index_t proj) {
  const CellInfo& info = cell_info(cell);
  const index_t bh = batch * hidden, bs = batch * (proj ? proj : hidden);
  index_t n = steps * batch * gates_stride(cell, hidden, value_bytes) + (steps + 1) * bs;
  if (info.cell_state) n += (steps + 1) * bh;
  if (info.extra || proj) n += steps * bh;
  return n;
}

}  // namespace rnnfast
