#include "rnn/cell.h"

#include <stdexcept>

namespace rnnfast {

const CellInfo& cell_info(Cell cell) {
#define RNNFAST_CELL_INFO(id, name, gates, cs, extra, two, lbr, proj, names, recipe) \
  {name, gates, cs, extra, two, lbr, proj, names},
  static const CellInfo kInfo[] = {RNNFAST_CELLS(RNNFAST_CELL_INFO)};
#undef RNNFAST_CELL_INFO
  return kInfo[static_cast<int>(cell)];
}

Cell parse_cell(const std::string& name) {
  std::string known;  // "a, b or c"
  for (int i = 0; i < kCellCount; ++i) {
    if (name == cell_info(kCells[i]).name) return kCells[i];
    known += (i == 0               ? ""
              : i + 1 < kCellCount ? ", "
                                   : " or ") +
             std::string(cell_info(kCells[i]).name);
  }
  throw std::invalid_argument("cell: expected " + known + ", got '" + name + "'");
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
