/* rnnfast's C API: recurrent stacks (RNN, LSTM, GRU) run by rnnfast's C++ core, for C, C++ and
 * Cython code that must not go through Python for every call.
 *
 * Two ways in:
 *   - C/C++: link librnnfast (find_package(rnnfast) with rnnfast.get_cmake_dir(); target
 *     rnnfast::rnnfast) and call the functions below.
 *   - Cython/CPython extensions: `cimport rnnfast` and call `rnnfast.import_rnnfast()` at module
 *     init; the same functions are then reached through a table of pointers that the Python
 *     package exports as the capsule "rnnfast._core._C_API" (no link step against rnnfast).
 *
 * Arrays are dense, row-major, time-major, of the stack's dtype (float or double), as in
 * rnnfast.Stack: x [T, B, I], y [T, B, D*S], h0/h_n [L*D, B, S], c0/c_n [L*D, B, H] (S = H, or
 * the projection's P), lengths int64 [B] in [1, T] or NULL. Parameters: per layer and direction
 * (l*D + d), PyTorch's order w_ih, w_hh, (b_ih, b_hh), (w_hr), (w_p). The stack keeps the
 * pointers: the memory must outlive it; after changing the values call rnnfast_params_changed.
 *
 * Every function that can fail returns 0 on success, or a nonzero status with a message in the
 * caller's rnnfast_error (which may be NULL); nothing throws across the boundary. No function
 * takes the GIL or touches Python: call them from `with nogil:` blocks or any thread.
 * Thread safety: as the Python API (forward calls may run concurrently on one stack).
 *
 * What is checked (RNNFAST_EINVAL with a message naming the argument): NULL stacks, tapes,
 * parameter and gradient pointers (every entry of params[] and grads[]) and every array the
 * call reads or writes but the optional ones (h0, c0, lengths, dy, dh_n, dc_n, dx); sizes < 1
 * or < 0, and sizes whose products (parameters, x, y, the tape) would overflow or exceed an
 * address space; lengths outside [1, T]; a tape used twice, made by another stack, made by a
 * stack since freed (even if a new stack now sits at the same address), or made before the
 * parameters changed (rnnfast_params_changed, rnnfast_set_params). A backward that fails
 * before it starts (bad arguments, no memory for its buffers) leaves the tape usable; the
 * gradients are added only once every step ran, so they are never half added.
 * What cannot be checked: pointers to too little memory (the arrays must hold the sizes
 * above), freed or foreign pointers (use after free, double free of a stack or tape), a stack
 * freed while another thread runs it, and parameter values changed without
 * rnnfast_params_changed (the packed copies are then stale).
 */
#ifndef RNNFAST_H
#define RNNFAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RNNFAST_BUILDING)
#define RNNFAST_API __attribute__((visibility("default")))
#else
#define RNNFAST_API
#endif

/* 2: rnnfast_spec gained `precision` (a struct of version 1 is one int shorter). */
#define RNNFAST_API_VERSION 2

enum rnnfast_status {
  RNNFAST_OK = 0,
  RNNFAST_EINVAL = 1,
  RNNFAST_ERUNTIME = 2,
  RNNFAST_ENOMEM = 3
};
enum rnnfast_cell {
  RNNFAST_RNN_TANH = 0,
  RNNFAST_RNN_RELU = 1,
  RNNFAST_LSTM = 2,
  RNNFAST_GRU = 3,              /* linear before reset (PyTorch's) */
  RNNFAST_GRU_RESET_BEFORE = 4, /* the original GRU */
};
enum rnnfast_dtype { RNNFAST_FLOAT32 = 0, RNNFAST_FLOAT64 = 1 };

/* What the products compute in: the stack's dtype, or (float32 stacks) bfloat16 operands with
 * float32 sums, as rnnfast.LSTM(precision="bf16") (its docstring states the error bound). */
enum rnnfast_precision { RNNFAST_PRECISION_NATIVE = 0, RNNFAST_PRECISION_BF16 = 1 };

typedef struct rnnfast_error {
  int status;
  char message[512];
} rnnfast_error;

typedef struct rnnfast_spec {
  int cell;  /* enum rnnfast_cell */
  int dtype; /* enum rnnfast_dtype */
  int64_t input_size, hidden_size, num_layers;
  int bidirectional, bias;
  int64_t proj_size; /* LSTM only; 0 for none */
  int peepholes;     /* LSTM only */
  int precision;     /* enum rnnfast_precision; a zeroed spec computes in its dtype */
} rnnfast_spec;

typedef struct rnnfast_stack rnnfast_stack; /* opaque */
typedef struct rnnfast_tape rnnfast_tape;   /* opaque: what a training forward keeps */

/* A stack of the given shape; *out is freed with rnnfast_stack_free. */
RNNFAST_API int rnnfast_stack_create(const rnnfast_spec* spec, rnnfast_stack** out,
                                     rnnfast_error* err);
RNNFAST_API void rnnfast_stack_free(rnnfast_stack* stack);
/* How many parameter arrays, and the number of values of array i. */
RNNFAST_API int64_t rnnfast_param_count(const rnnfast_stack* stack);
RNNFAST_API int64_t rnnfast_param_size(const rnnfast_stack* stack, int64_t i);
/* Binds the parameters (count arrays, in the order above); values are read at each call. */
RNNFAST_API int rnnfast_set_params(rnnfast_stack* stack, const void* const* params, int64_t count,
                                   rnnfast_error* err);
/* The parameters' values changed: packed copies are rebuilt at the next call. */
RNNFAST_API void rnnfast_params_changed(rnnfast_stack* stack);

/* Forward over T steps of B sequences. h0, c0, lengths may be NULL (zeros, full length).
 * With tape != NULL a training forward: *tape receives what backward needs (free it with
 * rnnfast_tape_free, or hand it to rnnfast_backward). */
RNNFAST_API int rnnfast_forward(rnnfast_stack* stack, int64_t steps, int64_t batch, const void* x,
                                const void* h0, const void* c0, const int64_t* lengths, void* y,
                                void* h_n, void* c_n, rnnfast_tape** tape, rnnfast_error* err);
/* BPTT through a tape (consumed: free it afterwards). dy, dh_n, dc_n may be NULL (zeros); dx
 * NULL skips the input gradient. Parameter gradients are ADDED to grads (the parameters'
 * shapes and order). */
RNNFAST_API int rnnfast_backward(rnnfast_stack* stack, rnnfast_tape* tape, const void* dy,
                                 const void* dh_n, const void* dc_n, void* dx, void* dh0, void* dc0,
                                 void* const* grads, int64_t grad_count, rnnfast_error* err);
RNNFAST_API void rnnfast_tape_free(rnnfast_tape* tape);
/* One step of a unidirectional stack, the state carried in place: x [B, I], h [L, B, S],
 * c [L, B, H] (LSTM), y [B, S] the top layer's output. */
RNNFAST_API int rnnfast_step(rnnfast_stack* stack, int64_t batch, const void* x, void* h, void* c,
                             void* y, rnnfast_error* err);
RNNFAST_API int rnnfast_set_num_threads(int n, rnnfast_error* err);
RNNFAST_API int rnnfast_get_num_threads(void);

/* The functions above as a table: what the capsule "rnnfast._core._C_API" points to. */
typedef struct rnnfast_api {
  int version; /* RNNFAST_API_VERSION */
  int (*stack_create)(const rnnfast_spec*, rnnfast_stack**, rnnfast_error*);
  void (*stack_free)(rnnfast_stack*);
  int64_t (*param_count)(const rnnfast_stack*);
  int64_t (*param_size)(const rnnfast_stack*, int64_t);
  int (*set_params)(rnnfast_stack*, const void* const*, int64_t, rnnfast_error*);
  void (*params_changed)(rnnfast_stack*);
  int (*forward)(rnnfast_stack*, int64_t, int64_t, const void*, const void*, const void*,
                 const int64_t*, void*, void*, void*, rnnfast_tape**, rnnfast_error*);
  int (*backward)(rnnfast_stack*, rnnfast_tape*, const void*, const void*, const void*, void*,
                  void*, void*, void* const*, int64_t, rnnfast_error*);
  void (*tape_free)(rnnfast_tape*);
  int (*step)(rnnfast_stack*, int64_t, const void*, void*, void*, void*, rnnfast_error*);
  int (*set_num_threads)(int, rnnfast_error*);
  int (*get_num_threads)(void);
} rnnfast_api;

RNNFAST_API const rnnfast_api* rnnfast_get_api(void);

#ifdef __cplusplus
}
#endif
#endif /* RNNFAST_H */
