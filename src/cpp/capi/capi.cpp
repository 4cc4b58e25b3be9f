// The C API (capi/rnnfast.h) over rnn::Stack: C types in, status codes and messages out; no
// exception crosses the boundary.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#define RNNFAST_BUILDING 1
#include "capi/rnnfast.h"
#include "rnn/stack.h"
#include "runtime/threads.h"

struct rnnfast_stack {
  rnnfast::StackSpec spec;
  int dtype = RNNFAST_FLOAT32;
  rnnfast::Precision precision = rnnfast::Precision::Native;
  std::unique_ptr<rnnfast::Stack<float>> f32;
  std::unique_ptr<rnnfast::Stack<double>> f64;
  std::vector<const void*> params;
  std::atomic<uint64_t> version{0};
};

struct rnnfast_tape {
  std::unique_ptr<rnnfast::Tape<float>> f32;
  std::unique_ptr<rnnfast::Tape<double>> f64;
};

// The C enum is cast to the core's: their values must agree.
static_assert(static_cast<int>(rnnfast::Cell::RnnTanh) == RNNFAST_RNN_TANH &&
                  static_cast<int>(rnnfast::Cell::RnnRelu) == RNNFAST_RNN_RELU &&
                  static_cast<int>(rnnfast::Cell::Lstm) == RNNFAST_LSTM &&
                  static_cast<int>(rnnfast::Cell::Gru) == RNNFAST_GRU &&
                  static_cast<int>(rnnfast::Cell::GruResetBefore) == RNNFAST_GRU_RESET_BEFORE,
              "rnnfast_cell and rnnfast::Cell disagree");
static_assert(rnnfast::kCellCount == RNNFAST_GRU_RESET_BEFORE + 1,
              "a cell of kernels/cells/cell_list.h has no rnnfast_cell constant");

namespace {

using rnnfast::index_t;

int fail(rnnfast_error* err, int status, const char* message) {
  if (err) {
    err->status = status;
    std::snprintf(err->message, sizeof(err->message), "%s", message);
  }
  return status;
}

// Runs body(); an exception becomes a status and its message.
template <typename Body>
int guarded(rnnfast_error* err, const Body& body) {
  try {
    body();
    if (err) {
      err->status = RNNFAST_OK;
      err->message[0] = '\0';
    }
    return RNNFAST_OK;
  } catch (const std::invalid_argument& e) {
    return fail(err, RNNFAST_EINVAL, e.what());
  } catch (const std::bad_alloc&) {
    return fail(err, RNNFAST_ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return fail(err, RNNFAST_ERUNTIME, e.what());
  } catch (...) {
    return fail(err, RNNFAST_ERUNTIME, "unknown error");
  }
}

index_t per_layer(const rnnfast::StackSpec& s) {
  return s.arrays_per_layer();
}

// Every one of the `count` pointers of `arrays` (named `what`) is given.
void check_pointers(const void* const* arrays, int64_t count, const char* what) {
  if (!arrays) throw std::invalid_argument(std::string(what) + ": NULL");
  for (int64_t i = 0; i < count; ++i)
    if (!arrays[i])
      throw std::invalid_argument(std::string(what) + "[" + std::to_string(i) + "]: NULL");
}

template <typename T>
void split(const rnnfast::StackSpec& s, const void* const* arrays, rnnfast::StackParams<T>* params,
           rnnfast::StackGrads<T>* grads) {
  const index_t per = per_layer(s);
  for (index_t k = 0; k < s.count(); ++k) {
    T* p[6] = {};
    for (index_t j = 0; j < per; ++j)
      p[j] = static_cast<T*>(const_cast<void*>(arrays[k * per + j]));
    T* b_ih = s.bias ? p[2] : nullptr;
    T* b_hh = s.bias ? p[3] : nullptr;
    T* w_hr = s.proj ? p[per - 1 - (s.peepholes ? 1 : 0)] : nullptr;
    T* w_p = s.peepholes ? p[per - 1] : nullptr;
    if (params) params->layers.push_back({p[0], p[1], b_ih, b_hh, w_hr, w_p});
    if (grads) {
      grads->w_ih.push_back(p[0]);
      grads->w_hh.push_back(p[1]);
      grads->b_ih.push_back(b_ih);
      grads->b_hh.push_back(b_hh);
      grads->w_hr.push_back(w_hr);
      grads->w_p.push_back(w_p);
    }
  }
}

void check_bound(const rnnfast_stack* stack) {
  if (!stack) throw std::invalid_argument("stack: NULL");
  if (stack->params.empty())
    throw std::invalid_argument("stack: rnnfast_set_params was not called");
}

// Sizes whose arrays could not exist are refused before any pointer is read (a product that
// wraps to 0 would otherwise pass the NULL checks).
void check_sizes(const rnnfast_stack* stack, int64_t steps, int64_t batch, const int64_t* lengths) {
  stack->spec.check_call(steps, batch, stack->dtype == RNNFAST_FLOAT32 ? 4 : 8);
  rnnfast::StackSpec::check_lengths(lengths, steps, batch);
}

template <typename T>
void forward_typed(rnnfast_stack* s, rnnfast::Stack<T>& core, int64_t steps, int64_t batch,
                   const void* x, const void* h0, const void* c0, const int64_t* lengths, void* y,
                   void* h_n, void* c_n, rnnfast_tape** tape) {
  rnnfast::StackParams<T> params;
  split<T>(s->spec, s->params.data(), &params, nullptr);
  std::unique_ptr<rnnfast::Tape<T>> t = tape ? std::make_unique<rnnfast::Tape<T>>() : nullptr;
  core.forward(params, s->version.load(), steps, batch, static_cast<const T*>(x), nullptr,
               static_cast<const T*>(h0), static_cast<const T*>(c0), lengths, static_cast<T*>(y),
               static_cast<T*>(h_n), static_cast<T*>(c_n), t.get(), {}, nullptr, s->precision);
  if (tape) {
    auto out = std::make_unique<rnnfast_tape>();
    if constexpr (std::is_same_v<T, float>) {
      out->f32 = std::move(t);
    } else {
      out->f64 = std::move(t);
    }
    *tape = out.release();
  }
}

template <typename T>
void backward_typed(rnnfast_stack* s, rnnfast::Stack<T>& core, rnnfast::Tape<T>& tape,
                    const void* dy, const void* dh_n, const void* dc_n, void* dx, void* dh0,
                    void* dc0, void* const* grads) {
  rnnfast::StackParams<T> params;
  rnnfast::StackGrads<T> g;
  split<T>(s->spec, s->params.data(), &params, nullptr);
  split<T>(s->spec, grads, nullptr, &g);
  core.backward(params, s->version.load(), tape, static_cast<const T*>(dy),
                static_cast<const T*>(dh_n), static_cast<const T*>(dc_n), static_cast<T*>(dx),
                static_cast<T*>(dh0), static_cast<T*>(dc0), g);
}

}  // namespace

extern "C" {

int rnnfast_stack_create(const rnnfast_spec* spec, rnnfast_stack** out, rnnfast_error* err) {
  return guarded(err, [&] {
    if (!spec || !out) throw std::invalid_argument("spec, out: NULL");
    *out = nullptr;
    if (spec->cell < RNNFAST_RNN_TANH || spec->cell > RNNFAST_GRU_RESET_BEFORE)
      throw std::invalid_argument("cell: expected an rnnfast_cell, got " +
                                  std::to_string(spec->cell));
    if (spec->dtype != RNNFAST_FLOAT32 && spec->dtype != RNNFAST_FLOAT64)
      throw std::invalid_argument("dtype: expected RNNFAST_FLOAT32 or RNNFAST_FLOAT64");
    if (spec->precision != RNNFAST_PRECISION_NATIVE && spec->precision != RNNFAST_PRECISION_BF16)
      throw std::invalid_argument(
          "precision: expected RNNFAST_PRECISION_NATIVE or RNNFAST_PRECISION_BF16, got " +
          std::to_string(spec->precision));
    if (spec->precision == RNNFAST_PRECISION_BF16 && spec->dtype != RNNFAST_FLOAT32)
      throw std::invalid_argument("precision: RNNFAST_PRECISION_BF16 needs dtype RNNFAST_FLOAT32");
    const auto cell = static_cast<rnnfast::Cell>(spec->cell);
    auto s = std::make_unique<rnnfast_stack>();
    s->spec = {cell,
               spec->input_size,
               spec->hidden_size,
               spec->num_layers,
               spec->bidirectional ? 2 : 1,
               spec->bias != 0,
               spec->proj_size,
               spec->peepholes != 0};
    s->spec.validate();
    s->dtype = spec->dtype;
    s->precision = spec->precision == RNNFAST_PRECISION_BF16 ? rnnfast::Precision::Bf16
                                                             : rnnfast::Precision::Native;
    if (s->dtype == RNNFAST_FLOAT32) {
      s->f32 = std::make_unique<rnnfast::Stack<float>>(s->spec);
    } else {
      s->f64 = std::make_unique<rnnfast::Stack<double>>(s->spec);
    }
    *out = s.release();
  });
}

void rnnfast_stack_free(rnnfast_stack* stack) {
  delete stack;
}

int64_t rnnfast_param_count(const rnnfast_stack* stack) {
  return stack ? stack->spec.count() * per_layer(stack->spec) : 0;
}

int64_t rnnfast_param_size(const rnnfast_stack* stack, int64_t i) {
  if (!stack || i < 0 || i >= rnnfast_param_count(stack)) return -1;
  const index_t per = per_layer(stack->spec);
  return stack->spec.param_values(i / per, i % per);
}

int rnnfast_set_params(rnnfast_stack* stack, const void* const* params, int64_t count,
                       rnnfast_error* err) {
  return guarded(err, [&] {
    if (!stack) throw std::invalid_argument("stack: NULL");
    if (count != rnnfast_param_count(stack))
      throw std::invalid_argument("count: expected " + std::to_string(rnnfast_param_count(stack)) +
                                  " arrays, got " + std::to_string(count));
    check_pointers(params, count, "params");
    stack->params.assign(params, params + count);
    stack->version.fetch_add(1);
  });
}

void rnnfast_params_changed(rnnfast_stack* stack) {
  if (stack) stack->version.fetch_add(1);
}

int rnnfast_forward(rnnfast_stack* stack, int64_t steps, int64_t batch, const void* x,
                    const void* h0, const void* c0, const int64_t* lengths, void* y, void* h_n,
                    void* c_n, rnnfast_tape** tape, rnnfast_error* err) {
  return guarded(err, [&] {
    check_bound(stack);
    check_sizes(stack, steps, batch, lengths);
    if (!x && steps && batch) throw std::invalid_argument("x: NULL");
    if (!y && steps && batch) throw std::invalid_argument("y: NULL");
    if (!h_n && batch) throw std::invalid_argument("h_n: NULL");
    if (rnnfast::cell_info(stack->spec.cell).cell_state && !c_n && batch)
      throw std::invalid_argument("c_n: NULL for an LSTM");
    if (tape) *tape = nullptr;
    if (stack->f32) {
      forward_typed(stack, *stack->f32, steps, batch, x, h0, c0, lengths, y, h_n, c_n, tape);
    } else {
      forward_typed(stack, *stack->f64, steps, batch, x, h0, c0, lengths, y, h_n, c_n, tape);
    }
  });
}

int rnnfast_backward(rnnfast_stack* stack, rnnfast_tape* tape, const void* dy, const void* dh_n,
                     const void* dc_n, void* dx, void* dh0, void* dc0, void* const* grads,
                     int64_t grad_count, rnnfast_error* err) {
  return guarded(err, [&] {
    check_bound(stack);
    if (!tape) throw std::invalid_argument("tape: NULL");
    if (grad_count != rnnfast_param_count(stack))
      throw std::invalid_argument("grad_count: expected " +
                                  std::to_string(rnnfast_param_count(stack)) + " arrays, got " +
                                  std::to_string(grad_count));
    check_pointers(grads, grad_count, "grads");
    if (!dh0) throw std::invalid_argument("dh0: NULL");
    const bool lstm = rnnfast::cell_info(stack->spec.cell).cell_state;
    if (lstm && !dc0) throw std::invalid_argument("dc0: NULL for an LSTM");
    // The tape's maker, use and version are checked by the core (Stack::check_tape).
    if (stack->f32) {
      if (!tape->f32) throw std::invalid_argument("tape: made by a stack of another dtype");
      backward_typed(stack, *stack->f32, *tape->f32, dy, dh_n, dc_n, dx, dh0, dc0, grads);
    } else {
      if (!tape->f64) throw std::invalid_argument("tape: made by a stack of another dtype");
      backward_typed(stack, *stack->f64, *tape->f64, dy, dh_n, dc_n, dx, dh0, dc0, grads);
    }
  });
}

void rnnfast_tape_free(rnnfast_tape* tape) {
  delete tape;
}

int rnnfast_step(rnnfast_stack* stack, int64_t batch, const void* x, void* h, void* c, void* y,
                 rnnfast_error* err) {
  return guarded(err, [&] {
    check_bound(stack);
    if (stack->spec.directions != 1)
      throw std::invalid_argument("step: a bidirectional stack needs the whole sequence");
    check_sizes(stack, 1, batch, nullptr);
    if (batch && (!x || !h || !y)) throw std::invalid_argument("x, h, y: NULL");
    if (batch && rnnfast::cell_info(stack->spec.cell).cell_state && !c)
      throw std::invalid_argument("c: NULL for an LSTM");
    // The state is both the initial and the final one: the stack reads h0 before writing h_n.
    if (stack->f32) {
      forward_typed(stack, *stack->f32, 1, batch, x, h, c, nullptr, y, h, c, nullptr);
    } else {
      forward_typed(stack, *stack->f64, 1, batch, x, h, c, nullptr, y, h, c, nullptr);
    }
  });
}

int rnnfast_set_num_threads(int n, rnnfast_error* err) {
  return guarded(err, [&] { rnnfast::set_num_threads(n); });
}

int rnnfast_get_num_threads(void) {
  return rnnfast::usable_threads();
}

const rnnfast_api* rnnfast_get_api(void) {
  static const rnnfast_api api = {
      RNNFAST_API_VERSION,    rnnfast_stack_create, rnnfast_stack_free,     rnnfast_param_count,
      rnnfast_param_size,     rnnfast_set_params,   rnnfast_params_changed, rnnfast_forward,
      rnnfast_backward,       rnnfast_tape_free,    rnnfast_step,           rnnfast_set_num_threads,
      rnnfast_get_num_threads};
  return &api;
}

}  // extern "C"
