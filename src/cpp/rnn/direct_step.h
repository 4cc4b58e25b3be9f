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
#pragma once
#include "rnn/packing.h"
#include "rnn/stack.h"

namespace rnnfast {

// Whether direct_step runs `spec`: one layer, one direction, no projection or peepholes, a cell
// with one product a step (not the reset-before GRU, whose W_hn (r*h) needs every unit's r).
bool direct_step_runs(const StackSpec& spec);

// Throws std::invalid_argument naming what it does not run (direct_step_runs) and for batch < 0.
template <typename T>
void direct_step(const StackSpec& spec, const LayerWeights<T>& w, index_t batch, const T* x,
                 const T* h0, const T* c0, T* h, T* c);

}  // namespace rnnfast
