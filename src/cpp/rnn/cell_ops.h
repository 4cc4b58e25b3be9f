// The kernels a cell's layer loops call, chosen once per call (as oneDNN's postgemm dispatcher
// chooses its epilogue once): the loops then call through these pointers, with no switch on the
// cell inside the time loop.
#pragma once
#include "kernels/table.h"
#include "rnn/cell.h"

namespace rnnfast {

template <typename T>
struct CellOps {
  // One step: the recurrent product fused with the cell's gates (kernels/recurrent.h).
  void (*forward)(const kernels::ForwardStep<T>&) = nullptr;
  void (*backward)(const kernels::BackwardStep<T>&) = nullptr;
  // A two-part cell's second product, after every unit of the first (reset-before GRU: n from
  // W_hn (r*h); backward, dL/d(r*h)); null for one-part cells.
  void (*forward_part2)(const kernels::ForwardStep<T>&) = nullptr;
  void (*backward_part2)(const kernels::BackwardStep<T>&) = nullptr;
  bool relu = false;  // an Elman RNN's activation: ReLU, else tanh
};

template <typename T>
CellOps<T> cell_ops(const kernels::KernelTable<T>& kt, Cell cell) {
  CellOps<T> ops;
  switch (cell) {
    case Cell::RnnTanh:
    case Cell::RnnRelu:
      ops.forward = kt.rnn_forward;
      ops.backward = kt.rnn_backward;
      ops.relu = cell == Cell::RnnRelu;
      break;
    case Cell::Lstm:
      ops.forward = kt.lstm_forward;
      ops.backward = kt.lstm_backward;
      break;
    case Cell::Gru:
      ops.forward = kt.gru_forward;
      ops.backward = kt.gru_backward;
      break;
    case Cell::GruResetBefore:
      ops.forward = kt.gru_rb_gates;
      ops.backward = kt.gru_rb_backward;
      ops.forward_part2 = kt.gru_rb_update;
      ops.backward_part2 = kt.gru_rb_backward_reset;
      break;
  }
  return ops;
}

}  // namespace rnnfast
