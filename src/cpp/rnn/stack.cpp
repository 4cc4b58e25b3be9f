#include "rnn/stack.h"

#include <algorithm>
#include <cstring>

namespace rnnfast {

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
std::vector<std::shared_ptr<const ForwardPacks<T>>> Stack<T>::forward_packs(
    const StackParams<T>& params, uint64_t version) {
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version == version && !cache_.forward.empty()) return cache_.forward;
  }
  std::vector<std::shared_ptr<const ForwardPacks<T>>> packs;
  for (index_t k = 0; k < spec_.count(); ++k)
    packs.push_back(pack_forward(spec_.cell, spec_.layer_input(k / spec_.directions), spec_.hidden,
                                 spec_.proj, params.layers[k]));
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version != version) cache_ = Cache{version, {}, {}};
    cache_.forward = packs;
  }
  return packs;
}

template <typename T>
std::vector<std::shared_ptr<const BackwardPacks<T>>> Stack<T>::backward_packs(
    const StackParams<T>& params, uint64_t version) {
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version == version && !cache_.backward.empty()) return cache_.backward;
  }
  std::vector<std::shared_ptr<const BackwardPacks<T>>> packs;
  for (index_t k = 0; k < spec_.count(); ++k)
    packs.push_back(pack_backward(spec_.cell, spec_.layer_input(k / spec_.directions), spec_.hidden,
                                  spec_.proj, params.layers[k]));
  if (version != kNoCache) {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.version != version) cache_ = Cache{version, {}, {}};
    cache_.backward = packs;
  }
  return packs;
}

template <typename T>
void Stack<T>::forward(const StackParams<T>& params, uint64_t version, index_t steps, index_t batch,
                       const T* x, const int64_t* ids, const T* h0, const T* c0,
                       const int64_t* lengths, T* y, T* h_n, T* c_n, Tape<T>* tape,
                       const Dropout& dropout) {
  const CellInfo& info = cell_info(spec_.cell);
  const index_t hd = spec_.hidden, sd = spec_.state(), dirs = spec_.directions;
  const index_t bh = batch * hd, bs = batch * sd, width = dirs * sd, rows = steps * batch;
  const auto packs = forward_packs(params, version);
  if (tape) {
    tape->steps = steps;
    tape->batch = batch;
    tape->version = version;
    tape->packs = packs;
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
    }
    // The next layer reads the dropped values (and its tape keeps them, for its weight gradient);
    // this layer's backward needs only its states, which the tape holds apart.
    if (!last && dropout.active()) apply_dropout(out, rows * width, dropout, l);
    layer_in = out;
  }
}

template <typename T>
void Stack<T>::backward(const StackParams<T>& params, Tape<T>& tape, const T* dy, const T* dh_n,
                        const T* dc_n, T* dx, T* dh0, T* dc0, const StackGrads<T>& grads,
                        T* dh_states, T* dc_states) {
  const CellInfo& info = cell_info(spec_.cell);
  const index_t steps = tape.steps, batch = tape.batch, hd = spec_.hidden, sd = spec_.state();
  const index_t dirs = spec_.directions, bh = batch * hd, bs = batch * sd, width = dirs * sd;
  const auto packs = backward_packs(params, tape.version);
  const int64_t* lens = tape.lengths.empty() ? nullptr : tape.lengths.data();
  Buffer<T> d_in[2];  // the gradient of layer l's input, for layer l-1 (two buffers in turn)
  const T* d_out = dy;
  for (index_t l = spec_.layers - 1; l >= 0; --l) {
    T* d_layer_in = dx;
    if (l > 0) {
      d_in[l % 2] = Buffer<T>(pool_, steps * batch * width);
      d_layer_in = d_in[l % 2].data();
    }
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
      a.dw_ih = grads.w_ih[k];
      a.dw_hh = grads.w_hh[k];
      a.db_ih = spec_.bias ? grads.b_ih[k] : nullptr;
      a.db_hh = spec_.bias ? grads.b_hh[k] : nullptr;
      a.dw_hr = spec_.proj ? grads.w_hr[k] : nullptr;
      a.dw_p = spec_.peepholes ? grads.w_p[k] : nullptr;
      a.grad_lock = &grad_mutex_;
      a.pool = pool_;
      a.dh_states = dh_states ? dh_states + k * steps * bs : nullptr;
      a.dc_states = dc_states && info.cell_state ? dc_states + k * steps * bh : nullptr;
      layer_backward(a);
    }
    // Through the dropout between layer l-1 and l: the same mask and scale as forward's.
    if (l > 0 && tape.dropout.active())
      apply_dropout(d_layer_in, steps * batch * width, tape.dropout, l - 1);
    d_out = d_layer_in;
    // This layer's tape is spent: give its memory back now.
    for (index_t d = 0; d < dirs; ++d) {
      const index_t k = l * dirs + d;
      tape.gates[k].reset();
      tape.hs[k].reset();
      tape.cs[k].reset();
      tape.extra[k].reset();
    }
    tape.inputs[l].reset();
  }
  tape.ids.reset();
  tape.consumed = true;
}

template class Tape<float>;
template class Tape<double>;
template class Stack<float>;
template class Stack<double>;

}  // namespace rnnfast
