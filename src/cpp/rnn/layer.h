// One direction of one layer over a whole sequence: forward (inference or training) and BPTT.
//
// Contract (dense row-major arrays; the caller allocates everything but workspaces):
//   x        [T, B, I]       the layer's input, time-major; or, for one-hot input, null with
//   ids      [T, B]          the index in [0, I) of each row's single 1 (x = one_hot(ids))
//   packs    the layer direction's packed weights (rnn/packing.h)
//   h0, c0   [B, S], [B, H]  c0 only for LSTM; null: zeros. S is the state W_hh multiplies: H, or
//                            P for an LSTM with a projection (proj = P > 0; see recurrent.h)
//   lengths  [B] in [1, T]   or null (every sequence has T steps)
//   y        row (t, b) at y + (t*B + b)*ldy, S values (ldy = D*S lets the two directions of a
//            layer share one array); zero past a sequence's end
// The tape, written by a training forward (null pointers for inference):
//   gates    [T, B] rows of gates_stride (rnn/cell.h), G*H used: gate activations; backward
//            overwrites them with dL/d(pre-activation)
//   hs, cs   [T+1, B, S], [T+1, B, H]  states: the one step t starts from at t, the one it
//                            makes at t+1 (t+1 and t for the reverse direction); cs only for LSTM
//   extra    [T, B, H]       GRU: W_hn h + b_hn (linear-before-reset; backward overwrites it with
//                            the n gate's input-side gradient) or r * h_prev (reset-before);
//                            projected LSTM: m = o * tanh(c)
// Backward runs in two parts: layer_backward_steps (the time loop, dh0/dc0, and dx written or
// added to, none when dx is null) and layer_backward_weights, which adds (+=) to the weight
// gradients under `grad_lock` when given (several threads may run backward on one module).
// Only the first part stops for `interrupt` (then throw_if_stopped must be called): the
// gradients are never half added.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>

#include "rnn/packing.h"
#include "runtime/arena.h"
#include "runtime/interrupt.h"

namespace rnnfast {

template <typename T>
struct LayerForward {
  Cell cell;
  index_t steps, batch, input, hidden;
  index_t proj;  // P, or 0
  bool reverse;
  const T* x;
  const int64_t* ids;
  const ForwardPacks<T>* packs;
  const T *h0, *c0;
  const int64_t* lengths;
  T* y;
  index_t ldy;
  T *h_n, *c_n;
  T *gates, *hs, *cs, *extra;  // the tape, or null for inference
  std::shared_ptr<BufferPool> pool;
  Interrupt* interrupt = nullptr;
};

template <typename T>
struct LayerBackward {
  Cell cell;
  index_t steps, batch, input, hidden;
  index_t proj;  // P, or 0
  bool reverse;
  const T* x;
  const int64_t* ids;
  const BackwardPacks<T>* packs;
  const int64_t* lengths;
  T *gates, *extra;  // the tape (overwritten, see above)
  const T *hs, *cs;
  const T* dy;  // rows as y, or null (zeros)
  index_t ldy;
  const T *dh_n, *dc_n;  // or null (zeros)
  T* dx;
  bool accumulate_dx;
  T *dh0, *dc0;
  T *dw_ih, *dw_hh, *db_ih, *db_hh;  // biases null when the layer has none
  T* dw_hr;                          // projected LSTM
  T* dw_p = nullptr;                 // LSTM peepholes [3H], or null
  T* dh_states = nullptr;            // or [T, B, S]: dL/dh_t of every step (zero past a length)
  T* dc_states = nullptr;            // or LSTM [T, B, H]: dL/dc_t
  T* dh_all = nullptr;  // projected LSTM: [T, B, S] room for dL/dh of every step (both parts)
  std::mutex* grad_lock;
  bool assign_grads = false;  // write the weight gradients (their arrays hold anything), not add
  std::shared_ptr<BufferPool> pool;
  Interrupt* interrupt = nullptr;
};

template <typename T>
void layer_forward(const LayerForward<T>& a);

template <typename T>
void layer_backward_steps(const LayerBackward<T>& a);
template <typename T>
void layer_backward_weights(const LayerBackward<T>& a);

}  // namespace rnnfast
