# cython: language_level=3, boundscheck=False, wraparound=False
"""An LSTM's forward, backward and streaming step through rnnfast's C API, from Cython, with the
GIL released: what an extension that cimports rnnfast does (see setup.py beside)."""

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

import numpy as np

cimport rnnfast

rnnfast.import_rnnfast()


cdef void check(int status, rnnfast.rnnfast_error* err) except *:
    if status != rnnfast.RNNFAST_OK:
        raise RuntimeError(err.message.decode())


cdef const void** pointers(list arrays) except NULL:
    cdef const void** out = <const void**>malloc(len(arrays) * sizeof(void*))
    cdef float[::1] flat
    for i, a in enumerate(arrays):
        flat = a.reshape(-1)
        out[i] = &flat[0]
    return out


def run(list params, float[:, :, ::1] x, float[:, :, ::1] dy, int64_t hidden, int64_t layers):
    """(y, h_n, c_n, dx, dh0, dc0, grads, y_by_step) of an LSTM with these parameters (float32
    arrays in PyTorch's order) on x (T, B, I), backward from dy (T, B, H)."""
    cdef int64_t steps = x.shape[0], batch = x.shape[1], inputs = x.shape[2]
    cdef rnnfast.rnnfast_error err
    cdef rnnfast.rnnfast_spec spec
    spec.cell = rnnfast.RNNFAST_LSTM
    spec.dtype = rnnfast.RNNFAST_FLOAT32
    spec.input_size, spec.hidden_size, spec.num_layers = inputs, hidden, layers
    spec.bidirectional, spec.bias, spec.proj_size, spec.peepholes = 0, 1, 0, 0
    spec.precision = rnnfast.RNNFAST_PRECISION_NATIVE
    cdef const rnnfast.rnnfast_api* api = rnnfast.api()
    cdef rnnfast.rnnfast_stack* stack = NULL
    cdef rnnfast.rnnfast_tape* tape = NULL
    check(api.stack_create(&spec, &stack, &err), &err)
    grads = [np.zeros_like(a) for a in params]
    cdef int64_t count = len(params)
    y = np.zeros((steps, batch, hidden), np.float32)
    h_n = np.zeros((layers, batch, hidden), np.float32)
    c_n = np.zeros_like(h_n)
    dx = np.zeros((steps, batch, inputs), np.float32)
    dh0, dc0 = np.zeros_like(h_n), np.zeros_like(h_n)
    y_step = np.zeros_like(y)
    h, c = np.zeros_like(h_n), np.zeros_like(h_n)
    cdef float[:, :, ::1] vy = y, vh = h_n, vc = c_n, vdx = dx, vdh = dh0, vdc = dc0
    cdef float[:, :, ::1] vys = y_step, vhs = h, vcs = c
    cdef const void** p = pointers(params)
    cdef const void** g = pointers(grads)
    cdef int status = 0
    cdef int64_t t
    try:
        check(api.set_params(stack, p, count, &err), &err)
        with nogil:
            status = api.forward(stack, steps, batch, &x[0, 0, 0], NULL, NULL, NULL, &vy[0, 0, 0],
                                 &vh[0, 0, 0], &vc[0, 0, 0], &tape, &err)
            if status == 0:
                status = api.backward(stack, tape, &dy[0, 0, 0], NULL, NULL, &vdx[0, 0, 0],
                                      &vdh[0, 0, 0], &vdc[0, 0, 0], <void* const*>g,
                                      count, &err)
            t = 0
            while status == 0 and t < steps:  # the same sequence, one step at a time
                status = api.step(stack, batch, &x[t, 0, 0], &vhs[0, 0, 0], &vcs[0, 0, 0],
                                  &vys[t, 0, 0], &err)
                t += 1
        check(status, &err)
    finally:
        api.tape_free(tape)
        api.stack_free(stack)
        free(p)
        free(g)
    return y, h_n, c_n, dx, dh0, dc0, grads, y_step


def time_calls(list params, float[:, :, ::1] x, int64_t hidden, int64_t layers, int64_t calls):
    """Seconds per inference forward through the C API, over `calls` calls in a nogil loop."""
    import time

    cdef int64_t steps = x.shape[0], batch = x.shape[1], count = len(params), i
    cdef rnnfast.rnnfast_error err
    cdef rnnfast.rnnfast_spec spec
    spec.cell, spec.dtype = rnnfast.RNNFAST_LSTM, rnnfast.RNNFAST_FLOAT32
    spec.input_size, spec.hidden_size, spec.num_layers = x.shape[2], hidden, layers
    spec.bidirectional, spec.bias, spec.proj_size, spec.peepholes = 0, 1, 0, 0
    spec.precision = rnnfast.RNNFAST_PRECISION_NATIVE
    cdef const rnnfast.rnnfast_api* api = rnnfast.api()
    cdef rnnfast.rnnfast_stack* stack = NULL
    check(api.stack_create(&spec, &stack, &err), &err)
    y = np.zeros((steps, batch, hidden), np.float32)
    h = np.zeros((layers, batch, hidden), np.float32)
    c = np.zeros_like(h)
    cdef float[:, :, ::1] vy = y, vh = h, vc = c
    cdef const void** p = pointers(params)
    cdef int status = 0
    try:
        check(api.set_params(stack, p, count, &err), &err)
        start = time.perf_counter()
        with nogil:
            i = 0
            while status == 0 and i < calls:
                status = api.forward(stack, steps, batch, &x[0, 0, 0], NULL, NULL, NULL,
                                     &vy[0, 0, 0], &vh[0, 0, 0], &vc[0, 0, 0], NULL, &err)
                i += 1
        elapsed = time.perf_counter() - start
        check(status, &err)
    finally:
        api.stack_free(stack)
        free(p)
    return elapsed / calls
