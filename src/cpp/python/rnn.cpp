// _core.Stack and _core.Tape: a module's C++ stack driver, one call per forward and backward.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "python/arrays.h"
#include "rnn/direct_step.h"
#include "rnn/stack.h"

namespace rnnfast::python {
namespace {

// The version argument that asks the stack to compare the parameters' values (kVerify).
constexpr int64_t kVerifyVersion = -2;

template <typename T>
struct Typed {
  using Value = T;
  explicit Typed(const StackSpec& spec) : core(spec) {}
  Stack<T> core;
  StackParams<T> params;
  StackGrads<T> grads;
  std::vector<py::array> param_refs, grad_refs;       // keep the bound arrays alive
  std::shared_ptr<const WeightsCopy<T>> direct_copy;  // the last direct training step's weights
};

// Ctrl-C during a call: the core asks this on the calling thread every few tens of ms. Python's
// C-level handler only notes a signal; running the handlers (which raise KeyboardInterrupt, the
// exception then pending on this thread) needs the GIL, taken back for that moment.
bool python_signal_raised(void*) {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// Runs a core call with the GIL released and Ctrl-C polled; a stopped call raises what the
// signal handler raised (KeyboardInterrupt).
template <typename F>
void run_interruptible(const F& f) {
  Interrupt interrupt(python_signal_raised, nullptr);
  try {
    py::gil_scoped_release release;
    f(&interrupt);
  } catch (const Interrupted&) {
    if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
}

// What a direct training step keeps for its backward: its activated gates and its weights.
struct PyDirectTape {
  std::variant<std::shared_ptr<const WeightsCopy<float>>,
               std::shared_ptr<const WeightsCopy<double>>>
      weights;
  py::array saved;
};

class PyTape {
 public:
  std::variant<std::unique_ptr<Tape<float>>, std::unique_ptr<Tape<double>>> tape;

  index_t bytes() const {
    return std::visit([](const auto& t) { return t ? t->bytes() : 0; }, tape);
  }
  bool consumed() const {
    return std::visit([](const auto& t) { return !t || t->consumed; }, tape);
  }
};

class PyStack {
  // (auto-returning helpers first: they must be defined before their uses)
  template <typename F>
  auto visit(const F& f) {
    return f32_ ? f(*f32_) : f(*f64_);
  }
  template <typename F>
  auto visit_const(const F& f) const {
    return f32_ ? f(static_cast<const Typed<float>&>(*f32_))
                : f(static_cast<const Typed<double>&>(*f64_));
  }

 public:
  PyStack(const std::string& cell, index_t input, index_t hidden, index_t layers,
          bool bidirectional, bool bias, const std::string& dtype, index_t proj_size,
          bool peepholes)
      : spec_{parse_cell(cell),      input, hidden,    layers,
              bidirectional ? 2 : 1, bias,  proj_size, peepholes},
        dtype_(parse_dtype(dtype)) {
    spec_.validate();
    if (dtype_ == Dtype::F32) {
      f32_ = std::make_unique<Typed<float>>(spec_);
    } else {
      f64_ = std::make_unique<Typed<double>>(spec_);
    }
  }

  // The module's parameters, in PyTorch's order: for each layer and direction, w_ih, w_hh and (with
  // bias) b_ih, b_hh. Bound once; read at every call (their values may change in place).
  void set_params(const py::list& arrays) {
    visit([&](auto& t) { bind(t, arrays, false); });
  }
  // The gradients' arrays, added to by backward, or with `assign` written (their values ignored:
  // a fresh np.empty needs no zeroing).
  void set_grads(const py::list& arrays, bool assign) {
    visit([&](auto& t) {
      bind(t, arrays, true);
      t.grads.assign = assign;
    });
  }

  py::tuple forward(const py::array& x, const py::object& h0, const py::object& c0,
                    const py::object& lengths, bool training, int64_t version, double dropout,
                    uint64_t dropout_key, const std::string& precision) {
    if (!(dropout >= 0 && dropout <= 1))  // NaN included
      throw std::invalid_argument("dropout: expected a probability in [0, 1], got " +
                                  std::to_string(dropout));
    const Dropout drop{dropout, dropout_key};
    const Precision pr = parse_precision(precision);
    return visit(
        [&](auto& t) { return forward_typed(t, x, h0, c0, lengths, training, version, drop, pr); });
  }

  // One timestep for every layer, the state carried in place: x [B, I], h (and c) [L*D, B, H]
  // read and overwritten, y [B, D*H] written. Nothing is allocated (streaming, sampling).
  void step(const py::array& x, py::array& h, const py::object& c, py::array& y, int64_t version,
            const std::string& precision) {
    const Precision pr = parse_precision(precision);
    visit([&](auto& t) { step_typed(t, x, h, c, y, version, pr); });
  }

  // One step of a one-layer, one-direction stack from the bound parameters as they are now, no
  // packed copy (rnn/direct_step.h): x [B, I], h0 and c0 [B, H] or None; returns (h, c or None),
  // new arrays.
  py::tuple direct_step(const py::array& x, const py::object& h0, const py::object& c0) {
    return visit([&](auto& t) {
      using T = typename std::decay_t<decltype(t)>::Value;
      return direct_step_typed(t, direct_inputs<T>(x, h0, c0), false);
    });
  }
  // direct_step on memory given by address (a torch tensor's data_ptr()) that the caller has
  // checked: x [B, I], h0 and c0 [B, H] (0: zeros), C-contiguous, of the stack's dtype and alive
  // for the call. A Python cell loop's step spent a sixth of its time making NumPy views.
  py::tuple direct_step_at(index_t batch, std::uintptr_t x, std::uintptr_t h0, std::uintptr_t c0) {
    return visit([&](auto& t) {
      using T = typename std::decay_t<decltype(t)>::Value;
      return direct_step_typed(t, inputs_at<T>(batch, x, h0, c0), false);
    });
  }
  // One step of every layer of a one-direction stack from the bound parameters as they are now
  // (rnn/direct_step.h direct_stack_step): x [B, I], h0 and c0 [L, B, H] or None; returns
  // (h_n, c_n or None), new arrays [L, B, H].
  py::tuple direct_stack_step(const py::array& x, const py::object& h0, const py::object& c0) {
    return visit([&](auto& t) { return direct_stack_step_typed(t, x, h0, c0); });
  }
  // The same keeping what direct_backward needs: returns (h, c or None, DirectTape).
  py::tuple direct_train_step(const py::array& x, const py::object& h0, const py::object& c0) {
    return visit([&](auto& t) {
      using T = typename std::decay_t<decltype(t)>::Value;
      return direct_step_typed(t, direct_inputs<T>(x, h0, c0), true);
    });
  }
  // The gradients of a direct_train_step from its x, h0, c0 (as they were) and tape, given dh
  // and dc (None: zeros): the bound gradients written or added to (set_grads); returns (dx or
  // None, dh0 or None, dc0 or None), dh0 and dc0 when h0 and c0 were given.
  py::tuple direct_backward(const py::array& x, const py::object& h0, const py::object& c0,
                            const PyDirectTape& saved, const py::object& dh, const py::object& dc,
                            bool input_grad) {
    return visit([&](auto& t) {
      return direct_backward_typed(t, x, h0, c0, saved, dh, dc, input_grad, bound_direct_grads(t));
    });
  }
  // The same writing the weights' gradients into new arrays from the stack's pool (back there
  // when they die) rather than the bound ones: returns (dx, dh0, dc0, [w_ih, w_hh, b_ih, b_hh]
  // in the parameters' shapes, the biases' with bias only). One call where binding a step's
  // gradients first (set_grads) and guarding that binding cost a B = 8 RNNCell's training step
  // several microseconds of 70.
  py::tuple direct_gradients(const py::array& x, const py::object& h0, const py::object& c0,
                             const PyDirectTape& saved, const py::object& dh, const py::object& dc,
                             bool input_grad) {
    return visit(
        [&](auto& t) { return direct_gradients_typed(t, x, h0, c0, saved, dh, dc, input_grad); });
  }

  // "fp32" (the module's own dtype, float64 included) or "bf16" (float32 modules only).
  Precision parse_precision(const std::string& name) const {
    if (name == "fp32") return Precision::Native;
    if (name != "bf16")
      throw std::invalid_argument("precision: expected 'fp32' or 'bf16', got '" + name + "'");
    if (dtype_ != Dtype::F32)
      throw std::invalid_argument("precision: 'bf16' needs a float32 module, this one is float64");
    return Precision::Bf16;
  }

  py::tuple backward(PyTape& tape, const py::object& dy, const py::object& dh_n,
                     const py::object& dc_n, bool input_grad, bool state_grads, int64_t version) {
    return visit([&](auto& t) {
      return backward_typed(t, tape, dy, dh_n, dc_n, input_grad, state_grads, version);
    });
  }

  // n values of the stack's dtype, not zeroed, whose memory comes from the stack's pool and goes
  // back to it when the array dies: gradients a backward writes (set_grads(assign=True)) each
  // step of a training loop, which in fresh memory from malloc faulted in every page again (a
  // third of a B = 1 LSTMCell step's backward).
  py::array pooled_empty(index_t n) {
    if (n < 0) throw std::invalid_argument("n: expected >= 0, got " + std::to_string(n));
    return visit([&](auto& t) -> py::array {
      using T = std::remove_cv_t<std::remove_reference_t<decltype(*t.params.layers[0].w_ih)>>;
      auto* buffer = new Buffer<T>(t.core.pool(), std::max<index_t>(n, 1));
      py::capsule owner(buffer, [](void* p) { delete static_cast<Buffer<T>*>(p); });
      return py::array_t<T>({n}, {static_cast<py::ssize_t>(sizeof(T))}, buffer->data(), owner);
    });
  }

  index_t tape_bytes(index_t steps, index_t batch) const {
    const index_t size = dtype_ == Dtype::F32 ? 4 : 8;
    return visit_const([&](const auto& t) { return t.core.tape_values(steps, batch) * size; });
  }
  size_t cached_bytes() const {
    return visit_const([](const auto& t) { return t.core.cached_bytes(); });
  }
  void release_memory() {
    visit([](auto& t) {
      py::gil_scoped_release release;
      t.core.release_memory();
    });
  }

 private:
  Shape state_shape(index_t batch) const {  // h: [L*D, B, S]
    return {spec_.count(), batch, spec_.state()};
  }
  Shape cell_shape(index_t batch) const {  // c: [L*D, B, H]
    return {spec_.count(), batch, spec_.hidden};
  }

  template <typename T>
  void bind(Typed<T>& t, const py::list& arrays, bool grads) {
    // Per layer and direction, PyTorch's order: w_ih, w_hh, (b_ih, b_hh), (w_hr), then (w_p).
    const index_t hd = spec_.hidden, g = cell_info(spec_.cell).gates * hd;
    const index_t per = (spec_.bias ? 4 : 2) + (spec_.proj ? 1 : 0) + (spec_.peepholes ? 1 : 0);
    const std::string what = grads ? "grads" : "params";
    if (static_cast<index_t>(arrays.size()) != spec_.count() * per) {
      throw std::invalid_argument(what + ": expected " + std::to_string(spec_.count() * per) +
                                  " arrays, got " + std::to_string(arrays.size()));
    }
    std::vector<py::array> refs;
    StackParams<T> params;
    StackGrads<T> gr;
    for (index_t k = 0; k < spec_.count(); ++k) {
      const index_t in = spec_.layer_input(k / spec_.directions);
      std::vector<std::vector<index_t>> shapes = {{g, in}, {g, spec_.state()}};
      if (spec_.bias) shapes.insert(shapes.end(), {{g}, {g}});
      if (spec_.proj) shapes.push_back({spec_.proj, hd});
      if (spec_.peepholes) shapes.push_back({3 * hd});
      std::vector<T*> ptr;
      for (index_t j = 0; j < per; ++j) {
        py::array a = arrays[static_cast<size_t>(k * per + j)].cast<py::array>();
        const std::string name = what + "[" + std::to_string(k * per + j) + "]";
        ptr.push_back(grads ? output<T>(name, a, shapes[j])
                            : const_cast<T*>(input<T>(name, a, shapes[j])));
        refs.push_back(a);
      }
      T* b_ih = spec_.bias ? ptr[2] : nullptr;
      T* b_hh = spec_.bias ? ptr[3] : nullptr;
      T* w_hr = spec_.proj ? ptr[per - 1 - (spec_.peepholes ? 1 : 0)] : nullptr;
      T* w_p = spec_.peepholes ? ptr.back() : nullptr;
      params.layers.push_back({ptr[0], ptr[1], b_ih, b_hh, w_hr, w_p});
      gr.w_p.push_back(w_p);
      gr.w_ih.push_back(ptr[0]);
      gr.w_hh.push_back(ptr[1]);
      gr.b_ih.push_back(b_ih);
      gr.b_hh.push_back(b_hh);
      gr.w_hr.push_back(w_hr);
    }
    if (grads) {
      t.grads = gr;
      t.grad_refs = refs;
    } else {
      t.params = params;
      t.param_refs = refs;
    }
  }

  template <typename T>
  void check_bound(const Typed<T>& t, bool grads) const {
    if (t.param_refs.empty()) throw std::logic_error("Stack: set_params was never called");
    if (grads && t.grad_refs.empty()) throw std::logic_error("Stack: set_grads was never called");
  }

  template <typename T>
  py::tuple forward_typed(Typed<T>& t, const py::array& x, const py::object& h0,
                          const py::object& c0, const py::object& lengths, bool training,
                          int64_t version, const Dropout& dropout, Precision precision) {
    check_bound(t, false);
    const bool one_hot = is_ids(x);
    if (one_hot && x.ndim() != 2) {
      throw std::invalid_argument(
          "x: expected a float array (T, B, I), or int64 indices of one-hot rows (T, B); got " +
          std::string(py::str(x.dtype())) + " with " + std::to_string(x.ndim()) + " dimensions");
    }
    if (!one_hot && x.ndim() != 3)
      throw std::invalid_argument("x: expected 3 dimensions (T, B, I), got " +
                                  std::to_string(x.ndim()));
    const index_t steps = x.shape(0), batch = x.shape(1);
    const T* px = one_hot ? nullptr : input<T>("x", x, {steps, batch, spec_.input});
    const int64_t* pids = one_hot ? checked_ids(x, {steps, batch}) : nullptr;
    const T* ph0 = input_or_null<T>("h0", h0, state_shape(batch));
    const bool lstm = cell_info(spec_.cell).cell_state;
    const T* pc0 = lstm ? input_or_null<T>("c0", c0, cell_shape(batch)) : nullptr;
    const int64_t* lens = nullptr;
    if (!lengths.is_none()) {
      lens = input<int64_t>("lengths", lengths.cast<py::array>(), {batch});
      StackSpec::check_lengths(lens, steps, batch);
    }
    auto y = new_array<T>({steps, batch, spec_.directions * spec_.state()});
    auto h_n = new_array<T>(state_shape(batch));
    T* pc_n;
    py::object c_n = new_array_if<T>(lstm, cell_shape(batch), &pc_n);
    std::unique_ptr<Tape<T>> tape = training ? std::make_unique<Tape<T>>() : nullptr;
    T* py_ = y.mutable_data();
    T* ph_n = h_n.mutable_data();
    run_interruptible([&](Interrupt* interrupt) {
      t.core.forward(t.params, core_version(version), steps, batch, px, pids, ph0, pc0, lens, py_,
                     ph_n, pc_n, tape.get(), dropout, interrupt, precision);
    });
    py::object tape_obj = py::none();
    if (tape) {
      PyTape pt;
      pt.tape = std::move(tape);
      tape_obj = py::cast(std::move(pt));
    }
    return py::make_tuple(y, h_n, c_n, tape_obj);
  }

  // A direct step's x [B, I], h0 and c0 [B, H] (or None), checked.
  template <typename T>
  struct DirectInputs {
    index_t batch;
    const T *x, *h0, *c0;
  };
  template <typename T>
  DirectInputs<T> direct_inputs(const py::array& x, const py::object& h0,
                                const py::object& c0) const {
    if (x.ndim() != 2)
      throw std::invalid_argument("x: expected 2 dimensions (B, I), got " +
                                  std::to_string(x.ndim()));
    const index_t batch = x.shape(0), hd = spec_.hidden;
    const bool lstm = cell_info(spec_.cell).cell_state;
    return {batch, input<T>("x", x, {batch, spec_.input}), input_or_null<T>("h0", h0, {batch, hd}),
            lstm ? input_or_null<T>("c0", c0, {batch, hd}) : nullptr};
  }

  // A direct step's inputs given by address (direct_step_at), their addresses checked as far
  // as an address can be: x not null, each aligned for T, a batch the outputs can hold.
  template <typename T>
  DirectInputs<T> inputs_at(index_t batch, std::uintptr_t x, std::uintptr_t h0,
                            std::uintptr_t c0) const {
    const index_t widest = std::max(spec_.input, spec_.hidden);
    if (batch < 1 || batch > std::numeric_limits<index_t>::max() / 8 / widest)
      throw std::invalid_argument("batch: expected 1 or more rows of a size that fits, got " +
                                  std::to_string(batch));
    if (x == 0) throw std::invalid_argument("x: expected an address, got 0");
    const auto at = [](const char* name, std::uintptr_t a) -> const T* {
      if (a % alignof(T) != 0)
        throw std::invalid_argument(std::string(name) + ": expected an address aligned to " +
                                    std::to_string(alignof(T)) + " bytes, got " +
                                    std::to_string(a));
      return reinterpret_cast<const T*>(a);
    };
    const bool lstm = cell_info(spec_.cell).cell_state;
    return {batch, at("x", x), at("h0", h0), lstm ? at("c0", c0) : nullptr};
  }

  template <typename T>
  py::tuple direct_step_typed(Typed<T>& t, const DirectInputs<T>& in, bool keep) {
    check_bound(t, false);
    const index_t batch = in.batch, hd = spec_.hidden;
    const bool lstm = cell_info(spec_.cell).cell_state;
    auto h = new_array<T>({batch, hd});
    T* pc;
    py::object c = new_array_if<T>(lstm, {batch, hd}, &pc);
    T* ph = h.mutable_data();
    py::array_t<T> saved;
    if (keep) saved = new_array<T>({batch, direct_saved_per_row(spec_)});
    // Read and written with the GIL held: calls from several threads never race on it.
    std::shared_ptr<const WeightsCopy<T>> copy = t.direct_copy;
    {
      py::gil_scoped_release release;
      rnnfast::direct_step(spec_, t.params.layers[0], batch, in.x, in.h0, in.c0, ph, pc,
                           keep ? saved.mutable_data() : nullptr, keep ? &copy : nullptr);
    }
    if (!keep) return py::make_tuple(h, c);
    t.direct_copy = copy;
    return py::make_tuple(h, c, py::cast(PyDirectTape{copy, saved}));
  }

  template <typename T>
  py::tuple direct_stack_step_typed(Typed<T>& t, const py::array& x, const py::object& h0,
                                    const py::object& c0) {
    check_bound(t, false);
    if (x.ndim() != 2)
      throw std::invalid_argument("x: expected 2 dimensions (B, I), got " +
                                  std::to_string(x.ndim()));
    const index_t batch = x.shape(0);
    const bool lstm = cell_info(spec_.cell).cell_state;
    const T* px = input<T>("x", x, {batch, spec_.input});
    const T* ph0 = input_or_null<T>("h0", h0, state_shape(batch));
    const T* pc0 = lstm ? input_or_null<T>("c0", c0, cell_shape(batch)) : nullptr;
    auto h = new_array<T>(state_shape(batch));
    T* pc;
    py::object c = new_array_if<T>(lstm, cell_shape(batch), &pc);
    T* ph = h.mutable_data();
    {
      py::gil_scoped_release release;
      rnnfast::direct_stack_step(spec_, t.params, batch, px, ph0, pc0, ph, pc);
    }
    return py::make_tuple(h, c);
  }

  // The bound gradients (set_grads) as a direct step's, written or added to as bound.
  template <typename T>
  DirectGrads<T> bound_direct_grads(const Typed<T>& t) const {
    check_bound(t, true);
    const StackGrads<T>& gr = t.grads;
    return {gr.w_ih[0], gr.w_hh[0], spec_.bias ? gr.b_ih[0] : nullptr,
            spec_.bias ? gr.b_hh[0] : nullptr, !gr.assign};
  }

  // `g`: where the weights' gradients go.
  template <typename T>
  py::tuple direct_backward_typed(Typed<T>& t, const py::array& x, const py::object& h0,
                                  const py::object& c0, const PyDirectTape& tape,
                                  const py::object& dh, const py::object& dc, bool input_grad,
                                  const DirectGrads<T>& g) {
    check_bound(t, false);
    const auto* weights = std::get_if<std::shared_ptr<const WeightsCopy<T>>>(&tape.weights);
    if (!weights || !*weights)
      throw std::invalid_argument("tape: made by a stack of another dtype");
    require_direct_step(spec_);
    const DirectInputs<T> in = direct_inputs<T>(x, h0, c0);
    const index_t batch = in.batch, hd = spec_.hidden;
    const bool lstm = cell_info(spec_.cell).cell_state;
    const T* psaved = input<T>("tape", tape.saved, {batch, direct_saved_per_row(spec_)});
    const T* pdh = input_or_null<T>("dh", dh, {batch, hd});
    const T* pdc = lstm ? input_or_null<T>("dc", dc, {batch, hd}) : nullptr;
    T *pdx, *pdh0, *pdc0;
    py::object dx = new_array_if<T>(input_grad, {batch, spec_.input}, &pdx);
    py::object dh0 = new_array_if<T>(in.h0 != nullptr, {batch, hd}, &pdh0);
    py::object dc0 = new_array_if<T>(in.c0 != nullptr, {batch, hd}, &pdc0);
    {
      py::gil_scoped_release release;
      rnnfast::direct_backward(spec_, (*weights)->weights(), batch, in.x, in.h0, in.c0, psaved, pdh,
                               pdc, pdx, pdh0, pdc0, g);
    }
    return py::make_tuple(dx, dh0, dc0);
  }

  template <typename T>
  py::tuple direct_gradients_typed(Typed<T>& t, const py::array& x, const py::object& h0,
                                   const py::object& c0, const PyDirectTape& tape,
                                   const py::object& dh, const py::object& dc, bool input_grad) {
    // Each gradient's rows and columns (0: a vector), one after the other in one buffer.
    const index_t rows = cell_info(spec_.cell).gates * spec_.hidden;
    const index_t count = spec_.bias ? 4 : 2;
    const index_t cols[4] = {spec_.input, spec_.hidden, 0, 0};
    const index_t total = rows * (spec_.input + spec_.hidden + (spec_.bias ? 2 : 0));
    auto* buffer = new Buffer<T>(t.core.pool(), std::max<index_t>(total, 1));
    const py::capsule owner(buffer, [](void* p) { delete static_cast<Buffer<T>*>(p); });
    T* parts[4] = {nullptr, nullptr, nullptr, nullptr};
    py::list grads;
    T* next = buffer->data();
    for (index_t i = 0; i < count; ++i) {
      parts[i] = next;
      const auto size = static_cast<py::ssize_t>(sizeof(T));
      if (cols[i] > 0) {
        grads.append(py::array_t<T>({rows, cols[i]}, {cols[i] * size, size}, next, owner));
        next += rows * cols[i];
      } else {
        grads.append(py::array_t<T>({rows}, {size}, next, owner));
        next += rows;
      }
    }
    const DirectGrads<T> into{parts[0], parts[1], parts[2], parts[3], false};
    const py::tuple d = direct_backward_typed(t, x, h0, c0, tape, dh, dc, input_grad, into);
    return py::make_tuple(d[0], d[1], d[2], grads);
  }

  template <typename T>
  void step_typed(Typed<T>& t, const py::array& x, py::array& h, const py::object& c, py::array& y,
                  int64_t version, Precision precision) {
    check_bound(t, false);
    if (spec_.directions != 1)
      throw std::invalid_argument("step: a bidirectional module needs the whole sequence");
    const bool one_hot = is_ids(x);
    if (one_hot && x.ndim() != 1) {
      throw std::invalid_argument(
          "x: expected a float array (B, I), or int64 indices of one-hot rows (B,); got " +
          std::string(py::str(x.dtype())) + " with " + std::to_string(x.ndim()) + " dimensions");
    }
    if (!one_hot && x.ndim() != 2)
      throw std::invalid_argument("x: expected 2 dimensions (B, I), got " +
                                  std::to_string(x.ndim()));
    const index_t batch = x.shape(0);
    const T* px = one_hot ? nullptr : input<T>("x", x, {batch, spec_.input});
    const int64_t* pids = one_hot ? checked_ids(x, {batch}) : nullptr;
    T* ph = output<T>("h", h, state_shape(batch));
    T* pc = nullptr;
    if (cell_info(spec_.cell).cell_state) {
      py::array ca = c.cast<py::array>();
      pc = output<T>("c", ca, cell_shape(batch));
    }
    T* py_ = output<T>("y", y, {batch, spec_.state()});
    py::gil_scoped_release release;
    t.core.forward(t.params, core_version(version), 1, batch, px, pids, ph, pc, nullptr, py_, ph,
                   pc, nullptr, {}, nullptr, precision);
  }

  // Python's versions: >= 0 a version the caller counts, kVerifyVersion compare the values,
  // other negatives no cache.
  static uint64_t core_version(int64_t version) {
    if (version == kVerifyVersion) return kVerify;
    return version < 0 ? kNoCache : static_cast<uint64_t>(version);
  }

  template <typename T>
  py::tuple backward_typed(Typed<T>& t, PyTape& pt, const py::object& dy, const py::object& dh_n,
                           const py::object& dc_n, bool input_grad, bool state_grads,
                           int64_t version) {
    check_bound(t, true);
    auto* holder = std::get_if<std::unique_ptr<Tape<T>>>(&pt.tape);
    if (!holder) throw std::invalid_argument("tape: made by a module of another dtype");
    if (!*holder) throw std::invalid_argument("tape: already used by backward; run forward again");
    Tape<T>& tape = **holder;
    const index_t steps = tape.steps, batch = tape.batch;
    const bool lstm = cell_info(spec_.cell).cell_state;
    const T* pdy = input_or_null<T>("dy", dy, {steps, batch, spec_.directions * spec_.state()});
    const T* pdh = input_or_null<T>("dh_n", dh_n, state_shape(batch));
    const T* pdc = lstm ? input_or_null<T>("dc_n", dc_n, cell_shape(batch)) : nullptr;
    T *pdx, *pdc0;
    py::object dx = new_array_if<T>(input_grad, {steps, batch, spec_.input}, &pdx);
    auto dh0 = new_array<T>(state_shape(batch));
    py::object dc0 = new_array_if<T>(lstm, cell_shape(batch), &pdc0);
    T* pdh0 = dh0.mutable_data();
    // dL/dh_t and dL/dc_t of every step: [L*D, T, B, S] and [L*D, T, B, H].
    const index_t count = spec_.layers * spec_.directions;
    T *pdhs, *pdcs;
    py::object dhs = new_array_if<T>(state_grads, {count, steps, batch, spec_.state()}, &pdhs);
    py::object dcs =
        new_array_if<T>(state_grads && lstm, {count, steps, batch, spec_.hidden}, &pdcs);
    run_interruptible([&](Interrupt* interrupt) {
      t.core.backward(t.params, core_version(version), tape, pdy, pdh, pdc, pdx, pdh0, pdc0,
                      t.grads, pdhs, pdcs, interrupt);
    });
    holder->reset();  // its memory is back in the pool
    if (state_grads) return py::make_tuple(dx, dh0, dc0, dhs, dcs);
    return py::make_tuple(dx, dh0, dc0);
  }

  // Integer x: indices of one-hot rows (int64 only: the Python layer converts).
  static bool is_ids(const py::array& x) {
    return x.dtype().kind() == 'i' || x.dtype().kind() == 'u';
  }

  const int64_t* checked_ids(const py::array& x, Shape shape) const {
    const int64_t* ids = input<int64_t>("x", x, shape);
    index_t n = 1;
    for (index_t d : shape) n *= d;
    for (index_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= spec_.input) {
        throw std::invalid_argument("x: expected indices in [0, " + std::to_string(spec_.input) +
                                    "), got " + std::to_string(ids[i]) + " at flat index " +
                                    std::to_string(i));
      }
    }
    return ids;
  }

  StackSpec spec_;
  Dtype dtype_;
  std::unique_ptr<Typed<float>> f32_;
  std::unique_ptr<Typed<double>> f64_;
};

}  // namespace

void init_rnn(py::module_& m) {
  m.attr("VERIFY_PARAMS") = kVerifyVersion;
  py::class_<PyTape>(m, "Tape", "What a training forward keeps for backward (C++-owned memory).")
      .def_property_readonly("nbytes", &PyTape::bytes)
      .def_property_readonly("consumed", &PyTape::consumed);
  py::class_<PyDirectTape>(m, "DirectTape",
                           "What a direct training step keeps for its backward (its activated "
                           "gates and the weights it ran with).");
  py::class_<PyStack>(m, "Stack", "A recurrent module's C++ driver: layers x directions.")
      .def(py::init<const std::string&, index_t, index_t, index_t, bool, bool, const std::string&,
                    index_t, bool>(),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"), py::arg("dtype"), py::arg("proj_size") = 0,
           py::arg("peepholes") = false)
      .def("set_params", &PyStack::set_params, py::arg("arrays"))
      .def("set_grads", &PyStack::set_grads, py::arg("arrays"), py::arg("assign") = false,
           "Binds the gradients' arrays: backward adds to them, or with assign writes them.")
      .def("direct_step", &PyStack::direct_step, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true),
           "One step of a one-layer, one-direction stack from the bound parameters as they are "
           "now, with no packed copy: x (B, I), h0 and c0 (B, H) or None; returns (h, c or "
           "None). For a few batch rows: reads the weights once a row.")
      .def("direct_step_at", &PyStack::direct_step_at, py::arg("batch"), py::arg("x"),
           py::arg("h0"), py::arg("c0"),
           "direct_step on memory given by address (torch's data_ptr()), checked by the caller: "
           "x (B, I), h0 and c0 (B, H) or 0, C-contiguous, of the stack's dtype.")
      .def("direct_stack_step", &PyStack::direct_stack_step, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true),
           "One step of every layer of a one-direction stack from the bound parameters as they "
           "are now, with no packed copy, each layer's input the new h of the one below: x (B, "
           "I), h0 and c0 (L, B, H) or None; returns (h_n, c_n or None), (L, B, H).")
      .def("direct_train_step", &PyStack::direct_train_step, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true),
           "direct_step keeping what direct_backward needs: returns (h, c or None, DirectTape).")
      .def("direct_backward", &PyStack::direct_backward, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true), py::arg("tape"), py::arg("dh").none(true),
           py::arg("dc").none(true), py::arg("input_grad"),
           "The gradients of a direct_train_step (its x, h0, c0, unchanged since, and its tape, "
           "which may serve again) given dh and dc (None: zeros), with the weights that step "
           "ran with: writes (assign) or adds to the bound gradients; returns (dx or None, dh0 "
           "or None, dc0 or None).")
      .def("direct_gradients", &PyStack::direct_gradients, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true), py::arg("tape"), py::arg("dh").none(true),
           py::arg("dc").none(true), py::arg("input_grad"),
           "direct_backward with the weights' gradients written into new arrays (from the "
           "stack's memory pool) instead of the bound ones: returns (dx or None, dh0 or None, "
           "dc0 or None, [w_ih, w_hh, b_ih, b_hh] in the parameters' shapes, the biases' with "
           "bias only).")
      .def("pooled_empty", &PyStack::pooled_empty, py::arg("n"),
           "n values of the stack's dtype (not zeroed) from its memory pool, back to it when the "
           "array dies.")
      .def("forward", &PyStack::forward, py::arg("x"), py::arg("h0").none(true),
           py::arg("c0").none(true), py::arg("lengths").none(true), py::arg("training"),
           py::arg("version"), py::arg("dropout") = 0.0, py::arg("dropout_key") = 0,
           py::arg("precision") = "fp32",
           "Returns (y, h_n, c_n or None, tape or None); version < 0: no packed-weight cache. "
           "An int64 x (T, B) holds the indices of one-hot rows. `dropout` > 0 drops values "
           "between layers with masks named by `dropout_key` (see rnn/dropout.h). `precision` "
           "'bf16' (float32 only) computes the products in bfloat16 (its backward too).")
      .def("step", &PyStack::step, py::arg("x"), py::arg("h"), py::arg("c").none(true),
           py::arg("y"), py::arg("version"), py::arg("precision") = "fp32",
           "One timestep, h (and c) updated in place, y written: nothing allocated. An int64 x "
           "(B,) holds the indices of one-hot rows.")
      .def("backward", &PyStack::backward, py::arg("tape"), py::arg("dy").none(true),
           py::arg("dh_n").none(true), py::arg("dc_n").none(true), py::arg("input_grad"),
           py::arg("state_grads") = false, py::arg("version") = -1,
           "Adds to the bound gradients; returns (dx or None, dh0, dc0 or None), and with "
           "state_grads also dL/dh_t [L*D, T, B, S] and dL/dc_t [L*D, T, B, H] (or None).")
      .def("tape_bytes", &PyStack::tape_bytes, py::arg("steps"), py::arg("batch"))
      .def("cached_bytes", &PyStack::cached_bytes)
      .def("release_memory", &PyStack::release_memory);
}

}  // namespace rnnfast::python
