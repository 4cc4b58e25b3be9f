#include "rnn/stack.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime/threads.h"

namespace rnnfast {
namespace {

// Versions kVerify gives out: far from the small counters front ends count with.
constexpr uint64_t kVerifyBase = uint64_t{1} << 62;
// No array of a call may exceed this: 2^47 bytes, the user address space of x86-64 and arm64.
constexpr index_t kMaxBytes = index_t{1} << 47;

// a * b, or std::invalid_argument naming `what` when it does not fit in an index_t.
index_t checked_mul(index_t a, index_t b, const char* what) {
  index_t out = 0;
  if (__builtin_mul_overflow(a, b, &out))
    throw std::invalid_argument(std::string(what) + ": too large (" + std::to_string(a) + " x " +
                                std::to_string(b) + " overflows)");
  return out;
}

// Calls f(pointer, values) for every parameter array of `params`, in the front ends' order.
template <typename T, typename F>
void for_each_param(const StackSpec& s, const StackParams<T>& params, const F& f) {
  for (index_t k = 0; k < s.count(); ++k) {
    const LayerWeights<T>& w = params.layers[static_cast<size_t>(k)];
    const T* arrays[] = {w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr, w.w_p};
    index_t j = 0;
    for (const T* a : arrays) {
      if (!a) continue;
      f(a, s.param_values(k, j++));
    }
  }
}

}  // namespace

index_t StackSpec::param_values(index_t k, index_t j) const {
  const index_t g = cell_info(cell).gates * hidden;
  const index_t sizes[] = {g * layer_input(k / directions),
                           g * state(),
                           bias ? g : 0,
                           bias ? g : 0,
                           proj * hidden,
                           3 * hidden};
  const bool present[] = {true, true, bias, bias, proj > 0, peepholes};
  for (index_t i = 0, n = 0; i < 6; ++i) {
    if (!present[i]) continue;
    if (n++ == j) return sizes[i];
  }
  throw std::out_of_range("param_values: no array " + std::to_string(j));
}

void StackSpec::validate() const {
  if (input < 1 || hidden < 1 || layers < 1)
    throw std::invalid_argument("input_size, hidden_size, num_layers: expected >= 1, got " +
                                std::to_string(input) + ", " + std::to_string(hidden) + ", " +
                                std::to_string(layers));
  if (directions != 1 && directions != 2)
    throw std::invalid_argument("directions: expected 1 or 2, got " + std::to_string(directions));
  if (proj < 0 || proj >= hidden)
    throw std::invalid_argument("proj_size: expected 0 <= proj_size < hidden_size, got " +
                                std::to_string(proj));
  if (proj && !cell_info(cell).projection)
    throw std::invalid_argument("proj_size: only an LSTM has a projection");
  if (peepholes && !cell_info(cell).projection)
    throw std::invalid_argument("peepholes: only an LSTM has peepholes");
  // Every size below must fit, in bytes of the widest dtype, with room for a row of the tape.
  const index_t g = checked_mul(cell_info(cell).gates + 1, hidden, "hidden_size");
  const index_t widest =
      checked_mul(std::max(input, checked_mul(directions, hidden, "hidden_size")), g,
                  "input_size x hidden_size");
  const index_t per_layer = checked_mul(widest + g, 2, "parameters");
  const index_t bytes =
      checked_mul(checked_mul(per_layer, count(), "num_layers x parameters"), 8, "parameter bytes");
  if (bytes > kMaxBytes)
    throw std::invalid_argument("num_layers, input_size, hidden_size: parameters of about " +
                                std::to_string(bytes) + " bytes, more than an address space holds");
}

index_t StackSpec::macs(index_t steps, index_t batch) const {
  const double gates = static_cast<double>(cell_info(cell).gates);
  double per_row = 0;
  for (index_t l = 0; l < layers; ++l) {
    const double in = static_cast<double>(layer_input(l) + state());
    per_row += static_cast<double>(directions) *
               (gates * static_cast<double>(hidden) * in + static_cast<double>(proj * hidden));
  }
  const double total = per_row * static_cast<double>(steps) * static_cast<double>(batch);
  constexpr double kMost = 9.0e18;  // below index_t's largest
  return total >= kMost ? static_cast<index_t>(kMost) : static_cast<index_t>(total);
}

void StackSpec::check_call(index_t steps, index_t batch, index_t value_bytes) const {
  if (steps < 0 || batch < 0)
    throw std::invalid_argument("steps, batch: expected >= 0, got " + std::to_string(steps) + ", " +
                                std::to_string(batch));
  const index_t rows = checked_mul(steps + 1, batch, "steps x batch");
  const index_t g = (cell_info(cell).gates + 1) * hidden;  // a tape row's values, and more
  const index_t row = std::max({input, directions * state(), g});
  const index_t bytes = checked_mul(
      checked_mul(checked_mul(rows, row, "steps x batch x width"), value_bytes, "bytes"),
      count() + 1, "steps x batch x bytes of every layer");
  if (bytes > kMaxBytes)
    throw std::invalid_argument("steps x batch: arrays of about " + std::to_string(bytes) +
                                " bytes, more than an address space holds");
}

void StackSpec::check_lengths(const int64_t* lengths, index_t steps, index_t batch) {
  if (!lengths) return;
  for (index_t b = 0; b < batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > steps)
      throw std::invalid_argument("lengths: expected values in [1, " + std::to_string(steps) +
                                  "], got " + std::to_string(lengths[b]) + " at index " +
                                  std::to_string(b));
  }
}

template <typename T>
index_t Tape<T>::bytes() const {
  index_t n = 0;
  for (const auto* list : {&inputs, &gates, &hs, &cs, &extra})
    for (const auto& b : *list) n += b.size();
  return n * static_cast<index_t>(sizeof(T)) + ids.size() * static_cast<index_t>(sizeof(int64_t));
}

template <typename T>
Stack<T>::Stack(StackSpec spec) : spec_(spec), pool_(std::make_shared<BufferPool>()) {}

template <typename T>
void Stack<T>::release_memory() {
  pool_->release();
  const std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_ = Cache{};
}

template <typename T>
index_t Stack<T>::tape_values(index_t steps, index_t batch) const {
  index_t n = steps * batch * spec_.input;  // x's copy
  n += (spec_.layers - 1) * steps * batch * spec_.directions * spec_.state();
  return n + spec_.count() * rnnfast::tape_values(spec_.cell, steps, batch, spec_.hidden,
                                                  static_cast<index_t>(sizeof(T)), spec_.proj);
}

template <typename T>
uint64_t Stack<T>::resolve(const StackParams<T>& params, uint64_t version) {
  if (version != kVerify) return version;
  const std::lock_guard<std::mutex> lock(verify_mutex_);
  index_t total = 0;
  for_each_param(spec_, params, [&](const T*, index_t n) { total += n; });
  bool same = seen_count_ > 0 && static_cast<index_t>(seen_.size()) == total;
  if (same) same = matches_seen(params, total);
  if (!same) {
    seen_.resize(static_cast<size_t>(total));
    index_t at = 0;
    for_each_param(spec_, params, [&](const T* p, index_t n) {
      std::copy(p, p + n, seen_.data() + at);
      at += n;
    });
    ++seen_count_;
  }
  return kVerifyBase + seen_count_;
}

template <typename T>
bool Stack<T>::matches_seen(const StackParams<T>& params, index_t total) const {
  // The arrays end to end as (start in seen_, pointer, size), compared by the team in equal
  // ranges of values: on a large module this pass is a T = 1 call's main cost.
  struct Segment {
    index_t at;
    const T* p;
    index_t n;
  };
  std::vector<Segment> segments;
  index_t at = 0;
  for_each_param(spec_, params, [&](const T* p, index_t n) {
    segments.push_back({at, p, n});
    at += n;
  });
  std::atomic<bool> differ{false};
  parallel_for(total, index_t{1} << 16, [&](index_t lo, index_t hi) {
    for (const Segment& sg : segments) {
      const index_t a = std::max(lo, sg.at), b = std::min(hi, sg.at + sg.n);
      if (a >= b || differ.load(std::memory_order_relaxed)) continue;
      const size_t bytes = static_cast<size_t>(b - a) * sizeof(T);
      if (std::memcmp(seen_.data() + a, sg.p + (a - sg.at), bytes) != 0) differ = true;
    }
  });
  return !differ.load();
}

template <typename T>
void Stack<T>::check_tape(const Tape<T>& tape, const StackParams<T>& params, uint64_t version) {
  const StackIdentity maker = tape.owner.lock();
  if (maker != identity_) {
    throw std::invalid_argument(tape.owner.expired()
                                    ? "tape: the module or stack that made it no longer exists"
                                    : "tape: it was made by another module; use it with the module "
                                      "whose forward made it");
  }
  if (tape.consumed.load())
    throw std::invalid_argument("tape: already used by backward; run forward(training=True) again");
  if (version != kNoCache && tape.version != kNoCache && resolve(params, version) != tape.version) {
    throw std::invalid_argument(
        "tape: the parameters changed since the forward that made it (an optimiser step, "
        "load_state_dict, a write through .data, ...); its gradient would be of neither. Run "
        "forward again");
  }
}

template <typename T>
std::vector<std::shared_ptr<const ForwardPacks<T>>> Stack<T>::forward_packs(
    const StackParams<T>& params, uint64_t version, Precision precision) {
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version == version && cache_.precision == precision && !cache_.forward.empty())
      return cache_.forward;
  }
  std::vector<std::shared_ptr<const ForwardPacks<T>>> packs;
  for (index_t k = 0; k < spec_.count(); ++k)
    packs.push_back(pack_forward(spec_.cell, spec_.layer_input(k / spec_.directions), spec_.hidden,
                                 spec_.proj, params.layers[k], precision));
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version != version || cache_.precision != precision)
      cache_ = Cache{version, precision, {}, {}};
    cache_.forward = packs;
  }
  return packs;
}

template <typename T>
std::vector<std::shared_ptr<const BackwardPacks<T>>> Stack<T>::backward_packs(
    const StackParams<T>& params, uint64_t version, Precision precision) {
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version == version && cache_.precision == precision && !cache_.backward.empty())
      return cache_.backward;
  }
  std::vector<std::shared_ptr<const BackwardPacks<T>>> packs;
  for (index_t k = 0; k < spec_.count(); ++k)
    packs.push_back(pack_backward(spec_.cell, spec_.layer_input(k / spec_.directions), spec_.hidden,
                                  spec_.proj, params.layers[k], precision));
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version != version || cache_.precision != precision)
      cache_ = Cache{version, precision, {}, {}};
    cache_.backward = packs;
  }
  return packs;
}

template <typename T>
void Stack<T>::forward(const StackParams<T>& params, uint64_t version, index_t steps, index_t batch,
                       const T* x, const int64_t* ids, const T* h0, const T* c0,
                       const int64_t* lengths, T* y, T* h_n, T* c_n, Tape<T>* tape,
                       const Dropout& dropout, Interrupt* interrupt, Precision precision) {
  const CellInfo& info = cell_info(spec_.cell);
  spec_.check_call(steps, batch, static_cast<index_t>(sizeof(T)));
  const CallTeam team(spec_.macs(steps, batch));
  if (precision == Precision::Bf16 && sizeof(T) != 4)
    throw std::invalid_argument("precision: 'bf16' needs a float32 module, this one is float64");
  StackSpec::check_lengths(lengths, steps, batch);
  const index_t hd = spec_.hidden, sd = spec_.state(), dirs = spec_.directions;
  const index_t bh = batch * hd, bs = batch * sd, width = dirs * sd, rows = steps * batch;
  version = resolve(params, version);
  const auto packs = forward_packs(params, version, precision);
  if (tape) {
    tape->steps = steps;
    tape->batch = batch;
    tape->version = version;
    tape->owner = identity_;
    tape->packs = packs;
    if (version != kNoCache) tape->backward_packs = backward_packs(params, version, precision);
    tape->dropout = dropout;
    if (lengths) tape->lengths.assign(lengths, lengths + batch);
    // The tape owns x's copy: whatever the caller does with its memory next, backward sees x.
    if (ids) {
      tape->ids = Buffer<int64_t>(pool_, rows);
      std::copy(ids, ids + rows, tape->ids.data());
      tape->inputs.emplace_back();
    } else {
      tape->inputs.emplace_back(pool_, rows * spec_.input);
      std::copy(x, x + rows * spec_.input, tape->inputs[0].data());
    }
  }
  const int64_t* layer_ids = tape && ids ? tape->ids.data() : ids;
  const int64_t* lens = tape && lengths ? tape->lengths.data() : lengths;
  // Inference passes each layer's output to the next through two buffers in turn.
  Buffer<T> between[2];
  const T* layer_in = tape ? tape->inputs[0].data() : x;  // null for ids
  for (index_t l = 0; l < spec_.layers; ++l) {
    const bool last = l + 1 == spec_.layers;
    T* out = y;
    if (!last) {
      if (tape) {
        tape->inputs.emplace_back(pool_, rows * width);
        out = tape->inputs.back().data();
      } else {
        between[l % 2] = Buffer<T>(pool_, rows * width);
        out = between[l % 2].data();
      }
    }
    for (index_t d = 0; d < dirs; ++d) {
      const index_t k = l * dirs + d;
      LayerForward<T> a{};
      a.cell = spec_.cell;
      a.steps = steps;
      a.batch = batch;
      a.input = spec_.layer_input(l);
      a.hidden = hd;
      a.proj = spec_.proj;
      a.reverse = d == 1;
      a.x = layer_in;
      a.ids = l == 0 ? layer_ids : nullptr;
      a.packs = packs[k].get();
      a.h0 = h0 ? h0 + k * bs : nullptr;
      a.c0 = info.cell_state && c0 ? c0 + k * bh : nullptr;
      a.lengths = lens;
      a.y = out + d * sd;
      a.ldy = width;
      a.h_n = h_n + k * bs;
      a.c_n = info.cell_state ? c_n + k * bh : nullptr;
      a.pool = pool_;
      a.interrupt = interrupt;
      if (tape) {
        tape->gates.emplace_back(
            pool_, rows * gates_stride(spec_.cell, hd, static_cast<index_t>(sizeof(T))));
        tape->hs.emplace_back(pool_, (steps + 1) * bs);
        tape->cs.emplace_back(pool_, info.cell_state ? (steps + 1) * bh : 0);
        tape->extra.emplace_back(pool_, info.extra || spec_.proj ? rows * hd : 0);
        a.gates = tape->gates.back().data();
        a.hs = tape->hs.back().data();
        a.cs = tape->cs.back().data();
        a.extra = tape->extra.back().data();
      }
      layer_forward(a);
      interrupt_throw(interrupt);
    }
    // The next layer reads the dropped values (and its tape keeps them, for its weight gradient);
    // this layer's backward needs only its states, which the tape holds apart.
    if (!last && dropout.active()) apply_dropout(out, rows * width, dropout, l);
    layer_in = out;
  }
}

template <typename T>
void Stack<T>::backward(const StackParams<T>& params, uint64_t version, Tape<T>& tape, const T* dy,
                        const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                        const StackGrads<T>& grads, T* dh_states, T* dc_states,
                        Interrupt* interrupt) {
  const CallTeam team(2 * spec_.macs(tape.steps, tape.batch));  // weight and input gradients
  check_tape(tape, params, version);
  const CellInfo& info = cell_info(spec_.cell);
  const index_t steps = tape.steps, batch = tape.batch, hd = spec_.hidden, sd = spec_.state();
  const index_t dirs = spec_.directions, bh = batch * hd, bs = batch * sd, width = dirs * sd;
  // The precision forward ran with (what the tape's gates were computed in).
  const Precision precision = tape.packs.empty() ? Precision::Native : tape.packs[0]->precision;
  const auto packs = tape.backward_packs.empty() ? backward_packs(params, tape.version, precision)
                                                 : tape.backward_packs;
  const int64_t* lens = tape.lengths.empty() ? nullptr : tape.lengths.data();
  // Everything the call needs beyond the layers' small workspaces, before the tape is touched: a
  // failure to get it leaves the tape as it was, for a retry.
  Buffer<T> d_in[2];  // the gradient of layer l's input, for layer l-1 (two buffers in turn)
  for (index_t l = 1; l < std::min<index_t>(spec_.layers, 3); ++l)
    d_in[l % 2] = Buffer<T>(pool_, steps * batch * width);
  std::vector<Buffer<T>> dh_all;  // a projected LSTM's dL/dh of every step, for W_hr's gradient
  for (index_t k = 0; k < spec_.count() && spec_.proj; ++k)
    dh_all.emplace_back(pool_, steps * batch * sd);
  if (tape.consumed.exchange(true))
    throw std::invalid_argument("tape: already used by backward; run forward(training=True) again");

  // First every layer's steps, top to bottom (this may be interrupted: nothing the caller keeps
  // is changed yet), then every weight gradient.
  std::vector<LayerBackward<T>> layers;
  const T* d_out = dy;
  for (index_t l = spec_.layers - 1; l >= 0; --l) {
    T* d_layer_in = l > 0 ? d_in[l % 2].data() : dx;
    for (index_t d = 0; d < dirs; ++d) {
      const index_t k = l * dirs + d;
      LayerBackward<T> a{};
      a.cell = spec_.cell;
      a.steps = steps;
      a.batch = batch;
      a.input = spec_.layer_input(l);
      a.hidden = hd;
      a.proj = spec_.proj;
      a.reverse = d == 1;
      a.x = tape.inputs[l].data();
      a.ids = l == 0 && tape.ids.size() ? tape.ids.data() : nullptr;
      a.packs = packs[k].get();
      a.lengths = lens;
      a.gates = tape.gates[k].data();
      a.extra = tape.extra[k].data();
      a.hs = tape.hs[k].data();
      a.cs = tape.cs[k].data();
      a.dy = d_out ? d_out + d * sd : nullptr;
      a.ldy = width;
      a.dh_n = dh_n ? dh_n + k * bs : nullptr;
      a.dc_n = dc_n ? dc_n + k * bh : nullptr;
      a.dx = d_layer_in;
      a.accumulate_dx = d == 1;
      a.dh0 = dh0 + k * bs;
      a.dc0 = info.cell_state ? dc0 + k * bh : nullptr;
      a.dh_all = spec_.proj ? dh_all[static_cast<size_t>(k)].data() : nullptr;
      a.dw_ih = grads.w_ih[k];
      a.dw_hh = grads.w_hh[k];
      a.db_ih = spec_.bias ? grads.b_ih[k] : nullptr;
      a.db_hh = spec_.bias ? grads.b_hh[k] : nullptr;
      a.dw_hr = spec_.proj ? grads.w_hr[k] : nullptr;
      a.dw_p = spec_.peepholes ? grads.w_p[k] : nullptr;
      a.assign_grads = grads.assign;
      a.grad_lock = &grad_mutex_;
      a.pool = pool_;
      a.interrupt = interrupt;
      a.dh_states = dh_states ? dh_states + k * steps * bs : nullptr;
      a.dc_states = dc_states && info.cell_state ? dc_states + k * steps * bh : nullptr;
      layer_backward_steps(a);
      interrupt_throw(interrupt);
      layers.push_back(a);
    }
    // Through the dropout between layer l-1 and l: the same mask and scale as forward's.
    if (l > 0 && tape.dropout.active())
      apply_dropout(d_layer_in, steps * batch * width, tape.dropout, l - 1);
    d_out = d_layer_in;
  }
  for (const LayerBackward<T>& a : layers) layer_backward_weights(a);
  // The tape is spent: its memory goes back to the pool.
  for (auto* list : {&tape.gates, &tape.hs, &tape.cs, &tape.extra, &tape.inputs})
    for (auto& b : *list) b.reset();
  tape.ids.reset();
}

template class Tape<float>;
template class Tape<double>;
template class Stack<float>;
template class Stack<double>;

}  // namespace rnnfast
