// One direction of one layer over a whole sequence: forward (inference or training) and BPTT.
//
// Contract (all arrays dense, row-major, allocated by the caller, never by these functions):
//   x       [T, B, I]        layer input, time-major
//   w_ih    [G*H, I]         w_hh [G*H, H]; b_ih, b_hh [G*H] or null (no bias)
//   h0, c0  [B, H]           c0 only for LSTM
//   lengths [B] in [1, T]    or null (every sequence has T steps)
//   y       rows of H values at y + (t*B + b)*ldy (ldy = D*H lets two directions share one array);
//           zero past a sequence's end
// Tape written by a training forward and read by backward (null for inference):
//   gates   [T, B, G*H]      gate activations
//   hs, cs  [T+1, B, H]      states; the state a step starts from and the one it makes sit at
//                            t and t+1 (forward) or t+1 and t (reverse). cs only for LSTM.
//   extra   [T, B, H]        GRU only: W_hn h + b_hn (linear-before-reset) or r*h (reset-before)
// Backward accumulates (+=) into the weight gradients, writes dh0/dc0, and writes or adds to dx
// (unless dx is null: no input gradient wanted).
#pragma once
#include <cstdint>

#include "cells.h"

namespace rnnfast {

template <typename T>
struct LayerForward {
  Cell cell;
  index_t steps, batch, input, hidden;
  bool reverse;
  const T *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
  const int64_t* lengths;
  T* y;
  index_t ldy;
  T *h_n, *c_n;
  T *gates, *hs, *cs, *extra;  // tape, null for inference
};

template <typename T>
struct LayerBackward {
  Cell cell;
  index_t steps, batch, input, hidden;
  bool reverse;
  const T *x, *w_ih, *w_hh;
  const int64_t* lengths;
  const T *gates, *hs, *cs, *extra;  // the tape
  const T* dy;                       // rows as y, or null (zeros)
  index_t ldy;
  const T *dh_n, *dc_n;  // or null (zeros)
  T* dx;
  bool accumulate_dx;
  T *dh0, *dc0;
  T *dw_ih, *dw_hh, *db_ih, *db_hh;  // biases null when the layer has none
};

// How a layer's recurrence is shared among threads (see layer.cpp): `threads` threads, owning
// rows of the batch (no barrier) or slices of the hidden units (a barrier per step).
struct RecurrencePlan {
  int threads;
  bool by_rows;
};
RecurrencePlan plan_recurrence(Cell cell, index_t batch, index_t hidden, index_t kernel_rows);

template <typename T>
void layer_forward(const LayerForward<T>& a);

template <typename T>
void layer_backward(const LayerBackward<T>& a);

}  // namespace rnnfast
