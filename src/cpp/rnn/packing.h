// A layer direction's weights in the layouts its kernels read, built once per parameter version
// (rnn/stack.h caches them).
//
// Recurrent panels (kernels/recurrent.h), groups of `width` units, zero past the last unit:
//   forward  W(gate, unit, k) = w_hh[(row0 + gate*H + unit) * S + k] (S: the state W_hh
//            multiplies, H or the projection's P): panel g at g*stride, [k][gate][lane] (every
//            gate of the group's units side by side);
//   backward the product dh_prev = dG W_hh: panel g, [k][lane] = w_hh[(row0 + k) * S + unit].
// A projected LSTM also packs W_hr (P x H): forward h = m W_hr^T (groups of P, depth H),
// backward dm = dh W_hr (groups of H, depth P).
#pragma once
#include <memory>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/recurrent.h"
#include "rnn/cell.h"
#include "runtime/aligned.h"

namespace rnnfast {

// Float panels, or (precision bf16) the same panels in bf16 pairs: depth k and k+1 in one 32-bit
// word, ceil(depth/2) rows (kernels/bf16.h).
template <typename T>
struct Panels {
  aligned_vector<T> data;
  aligned_vector<uint32_t> pairs;
  index_t stride = 0;  // between groups, in values or words
  // The product reads these weights.
  void bind(kernels::Product<T>& p) const {
    p.w = data.empty() ? nullptr : data.data();
    p.w_pairs = pairs.empty() ? nullptr : pairs.data();
    p.w_stride = stride;
  }
};

// What a forward pass reads: x W_ih^T's packed W_ih, the recurrent panels, the biases.
template <typename T>
struct ForwardPacks {
  Precision precision;
  kernels::PackedB<T> w_ih_t;  // K = I, N = G*H
  Panels<T> rec;               // reset-before GRU: the r and z blocks only
  Panels<T> rec_n;             // reset-before GRU: W_hn
  Panels<T> proj;              // projected LSTM: W_hr
  aligned_vector<T> bias;      // [G*H] added at each step, empty without bias: b_ih + b_hh,
                               // except linear-before-reset GRU's n block (b_in alone)
  aligned_vector<T> bias_hn;   // linear-before-reset GRU: b_hn
  aligned_vector<T> peep;      // LSTM peepholes [3H] (p_i, p_f, p_o), empty without
  index_t groups = 0;
};

// What backward reads besides: W_ih for dx (per K block where the input-side gradient lives in two
// arrays) and the recurrent panels of dh_prev = dG W_hh.
template <typename T>
struct BackwardPacks {
  Precision precision = Precision::Native;
  std::vector<kernels::PackedB<T>> w_ih;  // K = G*H; linear-before-reset GRU: rz (2H), then n (H)
  Panels<T> rec;                          // K = G*H (reset-before GRU: 2H)
  Panels<T> rec_n;                        // reset-before GRU: W_hn, K = H
  Panels<T> proj;                         // projected LSTM: W_hr, K = P
  aligned_vector<T> peep;                 // LSTM peepholes [3H], empty without
};

template <typename T>
struct LayerWeights {
  const T *w_ih, *w_hh, *b_ih, *b_hh;  // PyTorch's layout; biases null without bias
  const T* w_hr = nullptr;             // projected LSTM: [P, H]
  const T* w_p = nullptr;              // LSTM peepholes: [3H] (p_i, p_f, p_o)
};

template <typename T>
std::shared_ptr<const ForwardPacks<T>> pack_forward(Cell cell, index_t input, index_t hidden,
                                                    index_t proj, const LayerWeights<T>& w,
                                                    Precision precision);
// (bf16: every product of backward, the weight gradients' too, runs in bf16.)
template <typename T>
std::shared_ptr<const BackwardPacks<T>> pack_backward(Cell cell, index_t input, index_t hidden,
                                                      index_t proj, const LayerWeights<T>& w,
                                                      Precision precision);

}  // namespace rnnfast
