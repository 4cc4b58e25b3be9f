// One timestep of a one-layer, one-direction stack computed straight from the parameters in
// PyTorch's layout, with no packed copy and nothing kept: what a recurrent cell called once a
// step with a few batch rows runs (rnnfast.torch's cells without autograd, a decoder's loop).
// There the cached packed weights cost more than they save: the caller cannot see every write
// to the parameters (`p.data`, NumPy views), so the stack compares them with a copy at every
// call (Stack::forward, kVerify), reading the weights twice before its product reads its packs
// once; this reads them once, as the product.
//
// Arrays: x [B, I], h0 [B, H] and c0 [B, H] (LSTM; either may be null: zeros), h [B, H] and c
// [B, H] (LSTM) written. Each value is computed by one thread in one order whatever the team,
// so results are the same bits for any thread count (they differ in the last bits from the
// packed path's, whose sums run in another order).
//
// Training a cell step by step (rnnfast.torch's cells under autograd) runs the same way:
// direct_step keeps what its backward needs in `saved`, and the weights it ran with in a
// WeightsCopy (shared by the steps while the values stay the same), from which direct_backward
// computes the step's gradients: a write between forward and backward (torch's `.data`) does not
// reach them, as with the packed path's tapes. A training step's packed path compared the
// weights with its copy, then read its packs, and its backward ran the whole GEMM machinery for
// products one batch row deep.
#pragma once
#include <memory>
#include <vector>

#include "rnn/packing.h"
#include "rnn/stack.h"

namespace rnnfast {

// Whether direct_step runs `spec`: one layer, one direction, no projection or peepholes, a cell
// with one product a step (not the reset-before GRU, whose W_hn (r*h) needs every unit's r).
bool direct_step_runs(const StackSpec& spec);
// Throws std::invalid_argument naming what it is when direct_step does not run `spec`.
void require_direct_step(const StackSpec& spec);

// Values direct_step keeps a batch row for direct_backward: the activated gates (LSTM i, f, g, o
// and tanh(c); GRU r, z, n and W_hn h + b_hn; RNN h), each `hidden` long.
index_t direct_saved_per_row(const StackSpec& spec);

// A one-layer, one-direction stack's weights (w_ih, w_hh, b_ih, b_hh), copied.
template <typename T>
class WeightsCopy {
 public:
  WeightsCopy(const StackSpec& spec, const LayerWeights<T>& w);
  const LayerWeights<T>& weights() const { return view_; }
  // Whether the rows of units [lo, hi) of every gate hold the same bytes in `w` as here.
  bool same_units(const StackSpec& spec, const LayerWeights<T>& w, index_t lo, index_t hi) const;

 private:
  std::vector<T> values_;
  LayerWeights<T> view_{};
};

// Throws std::invalid_argument naming what it does not run (direct_step_runs) and for batch < 0.
// `saved` (null: nothing kept) [B, direct_saved_per_row(spec)]. With `copy` (training), *copy is
// left holding w's values: the same copy when they equal it, else a new one.
template <typename T>
void direct_step(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                 const T* h0, const T* c0, T* h, T* c, T* saved = nullptr,
                 std::shared_ptr<const WeightsCopy<T>>* copy = nullptr);

// Whether direct_stack_step runs `spec`: layers direct_step runs, stacked (one direction).
bool direct_stack_runs(const StackSpec& spec);

// One timestep of every layer of a one-direction stack without projection or peepholes, each
// layer a direct_step whose input is the new h of the layer below (inference: no dropout,
// nothing kept): x [B, I], h0 and c0 [L, B, H] (null: zeros), h and c [L, B, H] written. A
// decoder stepping a stacked module one input at a time: the packed path compares every
// layer's weights with a copy at each call, and two LSTM(128) layers' weights, copy and packs
// outgrow a core's L2 (a B = 1 call took 58 us there, 11 of them without the comparison).
// Throws std::invalid_argument naming what it does not run and for batch < 0.
template <typename T>
void direct_stack_step(const StackSpec& spec, const StackParams<T>& params, index_t batch,
                       const T* x, const T* h0, const T* c0, T* h, T* c);

// Where direct_backward puts the weights' gradients ([4H, I], [4H, H], [4H], [4H] for an LSTM;
// biases null without bias): written, or with `add` added to.
template <typename T>
struct DirectGrads {
  T *w_ih, *w_hh, *b_ih, *b_hh;
  bool add;
};

// The gradients of one direct_step (x, h0, c0 and `saved` as it was called and left them; `w`
// the weights it ran with, its WeightsCopy's) given
// dh and dc [B, H] (null: zeros): dx [B, I] (null: not wanted), dh0 and dc0 [B, H] (written when
// h0, c0 are given) and the weights' (`g`). Every value is one sum in one order whatever the
// team, as in direct_step.
template <typename T>
void direct_backward(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                     const T* h0, const T* c0, const T* saved, const T* dh, const T* dc, T* dx,
                     T* dh0, T* dc0, const DirectGrads<T>& g);

}  // namespace rnnfast
