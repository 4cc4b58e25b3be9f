// Elementwise work of one timestep for every cell: gate nonlinearities and state update (forward),
// and the gate derivatives (backward). The matrix products around them live in layer.cpp.
//
// Gate blocks of a row follow PyTorch: RNN [a], LSTM [i, f, g, o], GRU [r, z, n], each H wide.
// A call updates the hidden units [u0, u1) of `batch` rows, so threads can own slices of units
// (or of rows). A row whose `active` flag is 0 (its sequence has ended) carries its state
// unchanged and contributes no gradient.
#pragma once
#include <cstdint>

#include "threads.h"

namespace rnnfast {

enum class Cell : int { RnnTanh = 0, RnnRelu = 1, Lstm = 2, Gru = 3, GruResetBefore = 4 };

inline index_t gate_count(Cell cell) {
  switch (cell) {
    case Cell::Lstm:
      return 4;
    case Cell::Gru:
    case Cell::GruResetBefore:
      return 3;
    default:
      return 1;
  }
}
inline bool is_gru(Cell cell) {
  return cell == Cell::Gru || cell == Cell::GruResetBefore;
}

// Forward step. State arrays are [batch, H] (only units [u0, u1) are written).
template <typename T>
struct StepForward {
  index_t batch, hidden, u0, u1;
  T* gates;       // [batch, G*H] in: the input projection x W_ih^T; out: gate activations
  const T* bias;  // [G*H] biases added at this step (b_ih + b_hh, see layer.cpp), or null
  // The recurrent product: gate g of unit u of row b at hh[b*hh_ld + g*hh_gate + (u - u0)]
  // (including b_hn in the n block for GRU).
  const T* hh;
  index_t hh_ld, hh_gate;
  const T* h_prev;
  const T* c_prev;  // LSTM only
  T* h;
  T* c;                   // LSTM only
  T* extra;               // GRU: linear-before-reset W_hn h + b_hn; reset-before r * h_prev
  const uint8_t* active;  // [batch]
};

// RNN, LSTM and linear-before-reset GRU: the whole step.
template <typename T>
void forward_step(Cell cell, const StepForward<T>& s);
// Reset-before GRU, part 1: r, z and extra = r * h_prev (before the W_hn product).
template <typename T>
void gru_reset_before_gates(const StepForward<T>& s);
// Reset-before GRU, part 2: n = tanh(gates_n + hh_n) and the state update.
template <typename T>
void gru_reset_before_update(const StepForward<T>& s);

// Backward step. State arrays are [batch, H], gate arrays [batch, G*H]; units [u0, u1).
template <typename T>
struct StepBackward {
  index_t batch, hidden, u0, u1;
  const T* gates;   // gate activations from the tape
  const T* h_prev;  //
  const T* h;       // state after the step (RNN derivative)
  const T* c_prev;  // LSTM
  const T* c;       // LSTM
  const T* extra;   // GRU, as in StepForward
  const T* dh;      // dL/dh_t, everything that flows into h_t
  T* dc;            // LSTM, in: dL/dc_t from later steps; out: dL/dc_{t-1}
  T* dgx;           // out: dL/d(pre-activation), input side
  T* dgh;           // out: the same, recurrent side (differs only for linear-before-reset GRU)
  T* dh_prev;       // out: the part of dL/dh_{t-1} that does not go through W_hh
  T* scratch;       // [u1 - u0] work space (LSTM)
  const uint8_t* active;
};

template <typename T>
void backward_step(Cell cell, const StepBackward<T>& s);
// Reset-before GRU, part 2, once d_rh = dL/d(r*h_prev) = dgx_n W_hn is known ([batch, H]).
template <typename T>
void gru_reset_before_backward_reset(const StepBackward<T>& s, const T* d_rh);

}  // namespace rnnfast
