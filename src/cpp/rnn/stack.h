// A whole recurrent module: layers x directions, one call for forward and one for backward.
//
// Arrays (dense, row-major, time-major; the caller allocates them):
//   x [T, B, I] (or ids [T, B], indices in [0, I): x = one_hot(ids)), y [T, B, D*S], states
//   h0/h_n [L*D, B, S] and c0/c_n [L*D, B, H] (h0, c0 may be null: zeros), where S is H or a
//   projected LSTM's P; lengths [B] in [1, T] or null. Layer l > 0 reads layer l-1's y, the two
//   directions side by side. Parameters and gradients in PyTorch's layout, one entry per layer
//   and direction (index l*D + d), biases null without bias.
// A training forward fills a Tape (what backward needs, taken from the Stack's memory pool);
// backward consumes it: gradients are added (+=) to the given arrays, dx and dstate0 written.
// `precision` Bf16 (float32 stacks only) runs forward's products in bf16 (kernels/bf16.h), and
// the backward of its tape likewise (every product, the weight gradients' too; sums in float32).
// Packed weights are kept between calls while the caller's parameter version stays the same
// (kNoCache: pack for this call only; kVerify: compare the values themselves); see Stack::forward.
//
// A call stopped by its Interrupt throws Interrupted: a forward's outputs and tape are then
// partly written (discard them); a backward leaves the gradients untouched (it adds to them only
// after every step ran) and its tape spent.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "rnn/dropout.h"
#include "rnn/layer.h"
#include "runtime/interrupt.h"

namespace rnnfast {

struct StackSpec {
  Cell cell;
  index_t input, hidden, layers, directions;
  bool bias;
  index_t proj = 0;        // LSTM with a projection: P (h has P values, W_hr is P x H); 0: none
  bool peepholes = false;  // LSTM with peepholes: w_p [3H] per layer and direction
  index_t state() const { return proj ? proj : hidden; }  // S, the size of h
  index_t layer_input(index_t layer) const { return layer == 0 ? input : directions * state(); }
  index_t count() const { return layers * directions; }
  // Parameter arrays per layer and direction: w_ih, w_hh, (b_ih, b_hh), (w_hr), (w_p).
  index_t arrays_per_layer() const { return (bias ? 4 : 2) + (proj ? 1 : 0) + (peepholes ? 1 : 0); }
  // The number of values of parameter array j (< arrays_per_layer()) of layer-direction k.
  index_t param_values(index_t k, index_t j) const;

  // Throws std::invalid_argument naming the field for sizes < 1, options the cell does not have,
  // and sizes whose parameters or per-row arrays would not fit in an index_t of bytes.
  void validate() const;
  // Throws std::invalid_argument when steps or batch is negative, or when an array of the call
  // (x, y, states, the tape) would hold more bytes than an index_t counts.
  void check_call(index_t steps, index_t batch, index_t value_bytes) const;
  // Throws std::invalid_argument unless every lengths[b] is in [1, steps] (null: nothing to check).
  static void check_lengths(const int64_t* lengths, index_t steps, index_t batch);
  // The multiply-adds of a forward call (every layer's and direction's products), saturating:
  // what a call weighs when deciding whether to wake a team (runtime/threads.h CallTeam).
  index_t macs(index_t steps, index_t batch) const;
};

template <typename T>
struct StackParams {
  std::vector<LayerWeights<T>> layers;  // l*D + d
};

template <typename T>
struct StackGrads {
  std::vector<T*> w_ih, w_hh, b_ih, b_hh, w_hr, w_p;  // l*D + d (w_hr, w_p: LSTM options)
  bool assign = false;  // backward writes them (their values are ignored) instead of adding
};

inline constexpr uint64_t kNoCache = ~uint64_t{0};
// A version for callers that cannot see every write to the parameters (torch's `p.data`, NumPy
// views): the stack compares the values with those its packs were made from, byte for byte.
inline constexpr uint64_t kVerify = ~uint64_t{0} - 1;

// Who made a tape: a token no other stack shares, even one created later at the same address.
using StackIdentity = std::shared_ptr<const int>;

template <typename T>
class Tape {
 public:
  index_t steps = 0, batch = 0;
  uint64_t version = kNoCache;
  std::weak_ptr<const int> owner;
  Dropout dropout;  // the masks forward applied between layers, recomputed by backward
  std::atomic<bool> consumed{false};  // a backward claimed it (its gates are then overwritten)
  std::vector<int64_t> lengths;       // empty: every sequence has T steps
  Buffer<int64_t> ids;                // one-hot input: a copy of its indices
  std::vector<Buffer<T>> inputs;      // each layer's input (layer 0: x's copy)
  std::vector<Buffer<T>> gates, hs, cs, extra;                // l*D + d
  std::vector<std::shared_ptr<const ForwardPacks<T>>> packs;  // what forward ran with
  // What backward multiplies by, packed from the same values as `packs` when forward could name
  // them (a cached version): backward then never reads the parameters again, so a write between
  // forward and backward that no version saw cannot mix two sets of weights into one gradient.
  std::vector<std::shared_ptr<const BackwardPacks<T>>> backward_packs;
  index_t bytes() const;
};

template <typename T>
class Stack {
 public:
  explicit Stack(StackSpec spec);

  const StackSpec& spec() const { return spec_; }

  // `version` names the parameters' current values: the same version promises the same values,
  // so packed weights are reused; kNoCache packs afresh and keeps nothing; kVerify compares the
  // values with the last packed ones (a copy is kept) and repacks when any byte differs.
  // Exactly one of x and ids is given. `dropout` applies to every layer's output but the last's.
  void forward(const StackParams<T>& params, uint64_t version, index_t steps, index_t batch,
               const T* x, const int64_t* ids, const T* h0, const T* c0, const int64_t* lengths,
               T* y, T* h_n, T* c_n, Tape<T>* tape, const Dropout& dropout = {},
               Interrupt* interrupt = nullptr, Precision precision = Precision::Native);

  // Throws std::invalid_argument, naming what is wrong, unless `tape` was made by this stack's
  // training forward, is not used yet, and the parameters' `version` (as given to forward) is
  // the one it was made with (not checked when either is kNoCache: backward then computes the
  // gradient at the weights forward ran with, from the tape's packs).
  void check_tape(const Tape<T>& tape, const StackParams<T>& params, uint64_t version);

  // check_tape first. dy, dh_n, dc_n may be null (zeros); dx null when no input gradient is
  // wanted. dh_states [L*D, T, B, S] and dc_states [L*D, T, B, H] (LSTM), when given, receive
  // dL/dh_t and dL/dc_t of every step, layer and direction (zero past a sequence's length).
  // A failure before the tape is claimed (bad arguments, memory for the call's buffers) leaves
  // the tape usable; the gradients are added only after every layer's steps ran.
  void backward(const StackParams<T>& params, uint64_t version, Tape<T>& tape, const T* dy,
                const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0, const StackGrads<T>& grads,
                T* dh_states = nullptr, T* dc_states = nullptr, Interrupt* interrupt = nullptr);

  // Values of a training forward's tape for this size (what Tape::bytes will report / sizeof(T)).
  index_t tape_values(index_t steps, index_t batch) const;
  size_t cached_bytes() const { return pool_->cached_bytes(); }
  // The pool the stack's workspaces and tapes come from, for arrays its caller hands back to it
  // (gradients a backward writes: python/rnn.cpp pooled_empty).
  const std::shared_ptr<BufferPool>& pool() const { return pool_; }
  void release_memory();

 private:
  struct Cache {
    uint64_t version = kNoCache;
    Precision precision = Precision::Native;
    std::vector<std::shared_ptr<const ForwardPacks<T>>> forward;
    std::vector<std::shared_ptr<const BackwardPacks<T>>> backward;
  };
  std::vector<std::shared_ptr<const ForwardPacks<T>>> forward_packs(const StackParams<T>& params,
                                                                    uint64_t version,
                                                                    Precision precision);
  std::vector<std::shared_ptr<const BackwardPacks<T>>> backward_packs(const StackParams<T>& params,
                                                                      uint64_t version,
                                                                      Precision precision);
  // kVerify resolved to the version of the values the parameters hold now.
  uint64_t resolve(const StackParams<T>& params, uint64_t version);
  // Whether the parameters hold the `total` values of seen_ (under verify_mutex_).
  bool matches_seen(const StackParams<T>& params, index_t total) const;

  StackSpec spec_;
  StackIdentity identity_ = std::make_shared<const int>(0);
  std::mutex verify_mutex_;
  std::vector<T> seen_;      // the values kVerify last saw, every array end to end
  uint64_t seen_count_ = 0;  // how many different values it saw: their version is kVerifyBase+n
  std::shared_ptr<BufferPool> pool_;
  std::mutex cache_mutex_;
  Cache cache_;
  std::mutex grad_mutex_;  // backward calls on one module add to the same gradients
};

}  // namespace rnnfast
