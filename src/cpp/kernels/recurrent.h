// Arguments of the fused recurrent step kernels (kernels/recurrent_impl.h, compiled per ISA).
//
// One call computes one step for `rows` rows of the batch and the hidden units of groups
// [g0, g1) (a group is `width` consecutive units, the kernel's vector width; the last group of a
// layer may be cut at H). It first forms the recurrent product of the step,
//   acc[row][gate][unit] = sum over k of a[row*lda + k] * W(gate, unit, k),
// with W read from panels packed by rnn/packing (group g's panel at w + g*w_stride: for each k,
// the G gates' `width` values, one after the other), each output one accumulator summed over k in
// ascending order with fused multiply-adds (or two, one a block of k, added: Product::split);
// then, while the accumulators are still in registers,
// the cell's epilogue: the nonlinearities, the state update, and the writes to the state, the
// output and the tape. Which rows or groups a call covers never changes how an element is
// computed, so the split among threads never changes a result.
//
// Row r of a [rows, ...] operand is at base + r*ld (ld given, or p.hidden for states).
//
// An LSTM with a projection (LSTMP: h = W_hr m, m = o * tanh(c), h of P < H values) runs each step
// in two parts, as the reset-before GRU: the gates and c from h_prev (depth P), writing m; then
// h = m W_hr^T (lstm_project, groups of P). Backward: dh = dG_next W_hh + direct + dy
// (lstm_proj_dh, groups of P, written out), then dm = dh W_hr and the gate gradients
// (lstm_backward, projected). Gate k of unit u of a gate row is at k*H + u (PyTorch's gate order).
// A row whose active flag is 0 (its sequence has ended) keeps its state, outputs zeros and gets
// zero gate gradients.
#pragma once
#include <cstdint>

#include "runtime/types.h"

namespace rnnfast::kernels {

// Which part of a product split in depth (Product::split) a call sums.
enum class SumPart : uint8_t {
  kWhole,  // both blocks, then the epilogue
  kOwn,    // only block `own_low`, into `partial`; no epilogue
  kRest,   // the other block plus `partial` (a kOwn call's), then the epilogue
};

// The recurrent product's operands.
template <typename T>
struct Product {
  index_t rows = 0;   // rows of the batch
  index_t depth = 0;  // k: H forward; G*H (2H for the reset-before GRU) backward
  const T* a = nullptr;
  index_t lda = 0;
  const T* w = nullptr;  // packed panels
  // Or bf16 pairs (float only, precision "bf16"; kernels/bf16.h): panels [k/2][gate][lane] of
  // 32-bit words, the values of k and k+1 in one; A is rounded to bf16 as it is read.
  const uint32_t* w_pairs = nullptr;
  index_t w_stride = 0;  // between groups' panels (in values, or words for pairs)
  index_t g0 = 0, g1 = 0;
  index_t hidden = 0;  // H: the last group stops there
  // Float panels and one-row products only: each output summed as two blocks of depth, each from
  // zero in ascending order, then added (split 0: one block). The low block is [0, split) of every
  // period of `period` values of depth (0: one period, the whole depth; the backward's depth is G
  // periods of H, a gate's units each; single-gate products only), the high block the rest. A
  // member of a team owning units sums the block of its own units (kOwn) before its teammate's are
  // ready, then the rest (kRest): the same bits as kWhole, since a sum of two terms does not depend
  // on their order.
  index_t split = 0;
  index_t period = 0;
  SumPart part = SumPart::kWhole;
  bool own_low = true;   // kOwn sums the low block, else the high one; kRest the other
  T* partial = nullptr;  // with a split: row r's sums of group g at r*ld_partial + (g-g0)*G*W
  index_t ld_partial = 0;
};

// Forward step. `gates` holds the input projection x W_ih^T on entry and the gate activations on
// exit (in place: the tape when training, a chunk buffer in inference).
template <typename T>
struct ForwardStep {
  Product<T> p;        // a = h_prev (or r*h_prev for the reset-before GRU's n product)
  T* gates = nullptr;  // [rows, G*H], row stride ld_gates
  index_t ld_gates = 0;
  // [G*H] added at the step (b_ih + b_hh, summed at packing: rnn/packing.cpp), or null.
  const T* bias = nullptr;
  const T* bias_hn = nullptr;  // linear-before-reset GRU: b_hn, inside r*(W_hn h + b_hn), or null
  const T* h_prev = nullptr;   // [rows, H]
  T* h = nullptr;              // [rows, H] the new state
  const T* c_prev = nullptr;   // LSTM [rows, H]
  T* c = nullptr;              // LSTM [rows, H]
  T* y = nullptr;              // [rows, ldy] the output (null: not wanted)
  index_t ldy = 0;
  T* extra = nullptr;  // GRU [rows, H]: W_hn h + b_hn (linear-before-reset, training) or r*h_prev
                       // (reset-before, written by the first part, read by the second)
  const uint8_t* active = nullptr;  // [rows]
  bool relu = false;                // RNN: relu instead of tanh
  bool keep_gates = false;  // write every activation back (training); inference keeps only what
                            // the step itself reads again (the reset-before GRU's z)
  const T* peep = nullptr;  // LSTM peepholes [3H] (p_i, p_f, p_o), or null: i and f see c_{t-1},
                            // o sees c_t
  bool project = false;     // LSTM with a projection, first part: `h` receives m = o * tanh(c)
                            // ([rows, H], zero for an ended row), y is null; see lstm_project
};

// Backward step t: dh_t = acc + direct + dy_t (acc: the dG of step t+1 times W_hh, zero at the last
// step), then the gate gradients of step t. `direct` is the part of dh that does not go through
// W_hh (dh_n at the start, GRU's z*dh, the gradient an ended sequence passes through); it is
// replaced by step t-1's in place, as is LSTM's dc.
template <typename T>
struct BackwardStep {
  Product<T> p;  // a = dG of step t+1 (recurrent side); p.rows == 0 products nothing
  bool product = true;
  const T* dy = nullptr;  // [rows, ldy] or null (zeros)
  index_t ldy = 0;
  T* direct = nullptr;       // [rows, H] in and out
  const T* gates = nullptr;  // the tape's activations of step t, [rows, G*H], row stride ld_gates
  index_t ld_gates = 0;      // of gates and dg
  const T* h_prev = nullptr;
  const T* h = nullptr;  // RNN: the state the step made
  const T* c_prev = nullptr;
  const T* c = nullptr;
  T* dc = nullptr;           // LSTM [rows, H] in and out
  const T* extra = nullptr;  // linear-before-reset GRU: W_hn h + b_hn
  T* dg = nullptr;           // out [rows, G*H] (ld_gates): dL/d(pre-activations), recurrent side
  T* dg_n = nullptr;         // linear-before-reset GRU: the n gate's input side, [rows, H]
  T* dh0 = nullptr;          // final call only: dh0 = acc + direct, [rows, H]
  T* dh_out = nullptr;  // or [rows, p.hidden]: dh_t itself (zero for an ended row), for diagnostics
  T* dc_out = nullptr;  // or LSTM [rows, H]: dL/dc_t (zero for an ended row)
  const uint8_t* active = nullptr;
  bool relu = false;
  const T* peep = nullptr;  // LSTM peepholes [3H], as forward's
  bool projected = false;   // LSTM with a projection, second part: acc is dL/dm itself (no direct,
                            // no dy); an ended row gets zero gate gradients and keeps its dc
};

}  // namespace rnnfast::kernels
