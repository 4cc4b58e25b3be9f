"""The C API (src/cpp/capi/rnnfast.h) against what a C caller can get wrong: NULL pointers,
sizes whose products overflow, a tape used after the parameters changed, and a tape that
outlived its stack. Each must give a status and a message naming the argument, never a crash.

The calls go through ctypes into librnnfast, in a subprocess: a crash there fails one test
instead of ending the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import rnnfast

SCRIPT = textwrap.dedent(
    r"""
    import ctypes, json, sys
    from pathlib import Path
    import numpy as np

    lib = ctypes.CDLL(str(next(Path(sys.argv[1]).glob("librnnfast*"))))
    i64, vp = ctypes.c_int64, ctypes.c_void_p

    class Error(ctypes.Structure):
        _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 512)]

    class Spec(ctypes.Structure):
        _fields_ = [("cell", ctypes.c_int), ("dtype", ctypes.c_int), ("input_size", i64),
                    ("hidden_size", i64), ("num_layers", i64), ("bidirectional", ctypes.c_int),
                    ("bias", ctypes.c_int), ("proj_size", i64), ("peepholes", ctypes.c_int),
                    ("precision", ctypes.c_int)]

    err_p = ctypes.POINTER(Error)
    lib.rnnfast_stack_create.argtypes = [ctypes.POINTER(Spec), ctypes.POINTER(vp), err_p]
    lib.rnnfast_param_count.restype = i64
    lib.rnnfast_param_count.argtypes = [vp]
    lib.rnnfast_param_size.restype = i64
    lib.rnnfast_param_size.argtypes = [vp, i64]
    lib.rnnfast_set_params.argtypes = [vp, ctypes.POINTER(vp), i64, ctypes.POINTER(Error)]
    lib.rnnfast_params_changed.argtypes = [vp]
    lib.rnnfast_forward.argtypes = [vp, i64, i64] + [vp] * 7 + [ctypes.POINTER(vp), err_p]
    lib.rnnfast_backward.argtypes = [vp] * 8 + [ctypes.POINTER(vp), i64, err_p]
    lib.rnnfast_stack_free.argtypes = [vp]
    lib.rnnfast_tape_free.argtypes = [vp]
    LSTM = 2
    out = {}

    def create(name, input_size=3, hidden=4, layers=1, dtype=0, precision=0):
        err, stack = Error(), vp()
        spec = Spec(LSTM, dtype, input_size, hidden, layers, 0, 1, 0, 0, precision)
        status = lib.rnnfast_stack_create(
            ctypes.byref(spec), ctypes.byref(stack), ctypes.byref(err))
        out[name] = [status, err.message.decode()]
        return stack

    for name, kw in {"input_2^62": dict(input_size=2**62), "hidden_2^40": dict(hidden=2**40),
                     "layers_2^40": dict(layers=2**40), "hidden_0": dict(hidden=0),
                     "precision_7": dict(precision=7),
                     "precision_bf16_float64": dict(precision=1, dtype=1)}.items():
        lib.rnnfast_stack_free(create(name, **kw))

    keep = []
    def bound_stack():
        stack = create("ok")
        n = lib.rnnfast_param_count(stack)
        arrays = [np.full(lib.rnnfast_param_size(stack, i), 0.1, np.float32) for i in range(n)]
        keep.extend(arrays)
        ptrs = (vp * n)(*[a.ctypes.data for a in arrays])
        keep.append(ptrs)
        lib.rnnfast_set_params(stack, ptrs, n, None)
        return stack, ptrs, n

    T, B = 5, 2
    x = np.ones((T, B, 3), np.float32); y = np.zeros((T, B, 4), np.float32)
    h = np.zeros((1, B, 4), np.float32); c = np.zeros((1, B, 4), np.float32)
    dh0 = np.zeros_like(h); dc0 = np.zeros_like(c); dx = np.zeros_like(x)

    def forward(stack, tape, steps=T, batch=B, xp=None):
        err = Error()
        xp = x.ctypes.data if xp is None else xp
        status = lib.rnnfast_forward(stack, steps, batch, xp, None, None, None, y.ctypes.data,
                                     h.ctypes.data, c.ctypes.data, tape, ctypes.byref(err))
        return [status, err.message.decode()]

    def backward(stack, tape, grads, n):
        err = Error()
        status = lib.rnnfast_backward(stack, tape, None, None, None, dx.ctypes.data,
                                      dh0.ctypes.data, dc0.ctypes.data, grads, n, ctypes.byref(err))
        return [status, err.message.decode()]

    stack, ptrs, n = bound_stack()
    out["param_size"] = [lib.rnnfast_param_size(stack, i) for i in range(n)]
    out["forward_2^61_steps_null_x"] = forward(stack, None, steps=2**61, batch=8, xp=0)
    out["forward_null_x"] = forward(stack, None, xp=0)
    out["forward_negative_batch"] = forward(stack, None, batch=-1)

    grads = [np.zeros_like(a) for a in keep[:n]]
    gptrs = (vp * n)(*[g.ctypes.data for g in grads])
    holes = (vp * n)(*[None if i == 1 else g.ctypes.data for i, g in enumerate(grads)])
    tape = vp()
    out["train_forward"] = forward(stack, ctypes.byref(tape))
    out["backward_null_grad"] = backward(stack, tape, holes, n)
    out["backward_null_grads"] = backward(stack, tape, None, n)
    out["backward_wrong_count"] = backward(stack, tape, gptrs, n + 1)
    out["grads_untouched"] = all(not g.any() for g in grads)
    # The refusals left the tape usable.
    out["backward_after_refusals"] = backward(stack, tape, gptrs, n)
    out["backward_twice"] = backward(stack, tape, gptrs, n)
    lib.rnnfast_tape_free(tape)

    tape = vp()
    forward(stack, ctypes.byref(tape))
    lib.rnnfast_params_changed(stack)
    out["backward_after_params_changed"] = backward(stack, tape, gptrs, n)
    lib.rnnfast_tape_free(tape)

    tape = vp()
    forward(stack, ctypes.byref(tape))
    lib.rnnfast_set_params(stack, ptrs, n, None)
    out["backward_after_set_params"] = backward(stack, tape, gptrs, n)
    lib.rnnfast_tape_free(tape)

    # A tape that outlives its stack, handed to a stack made after (often at the same address).
    tape = vp()
    forward(stack, ctypes.byref(tape))
    old = stack.value
    lib.rnnfast_stack_free(stack)
    for _ in range(8):
        stack, ptrs, n = bound_stack()
        if stack.value == old:
            break
    out["same_address"] = stack.value == old
    out["backward_after_stack_freed"] = backward(stack, tape, gptrs, n)
    lib.rnnfast_tape_free(tape)
    other, _, _ = bound_stack()
    tape = vp()
    forward(other, ctypes.byref(tape))
    out["backward_other_stack"] = backward(stack, tape, gptrs, n)
    lib.rnnfast_tape_free(tape)

    # A bf16 stack computes what rnnfast.LSTM(precision="bf16") does, bit for bit.
    import rnnfast
    err, bf = Error(), vp()
    spec = Spec(LSTM, 0, 3, 4, 1, 0, 1, 0, 0, 1)
    lib.rnnfast_stack_create(ctypes.byref(spec), ctypes.byref(bf), ctypes.byref(err))
    m = rnnfast.LSTM(3, 4, seed=2, precision="bf16")
    arrays = [np.ascontiguousarray(a) for a in m.state_dict().values()]
    lib.rnnfast_set_params(bf, (vp * 4)(*[a.ctypes.data for a in arrays]), 4, None)
    xr = np.random.default_rng(3).standard_normal((T, B, 3)).astype(np.float32)
    forward(bf, None, xp=xr.ctypes.data)
    out["bf16_matches_module"] = bool(np.array_equal(y, m(xr)[0]))
    m.precision = "fp32"
    out["bf16_differs_from_fp32"] = not np.array_equal(y, m(xr)[0])
    lib.rnnfast_stack_free(bf)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def results():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, rnnfast.get_library_dir()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"the C API crashed ({done.returncode}): {done.stderr[-3000:]}"
    return json.loads(done.stdout.splitlines()[-1])


EINVAL = 1


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("input_2^62", "input_size"),
        ("hidden_2^40", "hidden_size"),
        ("layers_2^40", "num_layers"),
        ("hidden_0", "hidden_size"),
        ("precision_7", "precision: expected RNNFAST_PRECISION_NATIVE or RNNFAST_PRECISION_BF16"),
        ("precision_bf16_float64", "precision: RNNFAST_PRECISION_BF16 needs dtype"),
        ("forward_2^61_steps_null_x", "steps x batch"),
        ("forward_null_x", "x: NULL"),
        ("forward_negative_batch", "steps, batch"),
        ("backward_null_grad", "grads[1]: NULL"),
        ("backward_null_grads", "grads: NULL"),
        ("backward_wrong_count", "grad_count"),
        ("backward_twice", "already used"),
        ("backward_after_params_changed", "parameters changed"),
        ("backward_after_set_params", "parameters changed"),
        ("backward_after_stack_freed", "no longer exists"),
        ("backward_other_stack", "another module"),
    ],
)
def test_refused_with_a_status_naming_the_argument(results, case, words):
    status, message = results[case]
    assert status == EINVAL, (case, status, message)
    assert words in message, (case, message)


def test_good_calls_and_sizes_still_work(results):
    assert results["train_forward"] == [0, ""]
    assert results["backward_after_refusals"] == [0, ""]
    assert results["grads_untouched"], "a refused backward changed the gradients"
    assert results["param_size"] == [16 * 3, 16 * 4, 16, 16]


def test_bf16_precision_through_the_c_api(results):
    """RNNFAST_PRECISION_BF16 gives rnnfast.LSTM(precision="bf16")'s bits, not float32's."""
    assert results["bf16_matches_module"]
    assert results["bf16_differs_from_fp32"]
