// The kernels a cell's layer loops call, chosen once per call from the active ISA's table (each
// cell's recipe, kernels/cells/cell_list.h): the loops call through them, with no switch on the
// cell inside the time loop.
#pragma once
#include "kernels/table.h"
#include "rnn/cell.h"

namespace rnnfast {

template <typename T>
using CellOps = kernels::CellKernels<T>;

template <typename T>
const CellOps<T>& cell_ops(const kernels::KernelTable<T>& kt, Cell cell) {
  return kt.of(cell);
}

}  // namespace rnnfast
