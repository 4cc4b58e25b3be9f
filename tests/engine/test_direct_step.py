"""Stack.direct_step (src/cpp/rnn/direct_step.h): one step of a one-layer, one-direction stack
straight from the parameters as they are, against the NumPy reference; the same bits for one
thread and two; the weights read at every call; what it does not run is refused by name; the
same bits from direct_step_at, its form on memory given by address. And its training form,
Stack.direct_train_step with direct_backward: the step's gradients against the reference's
backward, the same bits for one thread and two, the gradient of the weights the forward ran with
whatever is written to them before backward."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from rnnfast.reference import _direction_backward, _direction_forward

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
TOL = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


def _stack(cell: str, inp: int, hid: int, bias: bool, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = GATES[cell] * hid
    params = [rng.standard_normal((g, inp)) * 0.4, rng.standard_normal((g, hid)) * 0.4]
    if bias:
        params += [rng.standard_normal(g) * 0.3, rng.standard_normal(g) * 0.3]
    params = [p.astype(dtype) for p in params]
    stack = _core.Stack(cell, inp, hid, 1, False, bias, dtype)
    stack.set_params(params)
    return stack, params


def _reference(cell, params, x, h0, c0, dh=None, dc=None):
    """One step of the NumPy reference, in float64: (h, c), and with dh (and dc) also
    (dx, dh0, dc0, [dW_ih, dW_hh, db_ih, db_hh])."""
    w_ih, w_hh = (p.astype(np.float64) for p in params[:2])
    g = w_ih.shape[0]
    b_ih, b_hh = (
        (p.astype(np.float64) for p in params[2:]) if len(params) == 4 else (np.zeros(g),) * 2
    )
    batch, hid = x.shape[0], w_hh.shape[1]
    h = np.zeros((batch, hid)) if h0 is None else h0.astype(np.float64)
    c = None
    if cell == "lstm":
        c = np.zeros((batch, hid)) if c0 is None else c0.astype(np.float64)
    mask = np.ones((1, batch), bool)
    x64 = x.astype(np.float64)[None]
    w = (w_ih, w_hh, b_ih, b_hh, None, None)
    _, h_n, c_n, cache = _direction_forward(cell, x64, w, h, c, mask, dh is not None)
    if dh is None:
        return h_n, c_n
    grads = [np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(g), np.zeros(g), None, None]
    dc64 = None if cell != "lstm" else (np.zeros_like(h) if dc is None else dc.astype(np.float64))
    dx, dh0, dc0 = _direction_backward(
        cell, x64, w, grads, cache, None, dh.astype(np.float64), dc64, mask
    )
    return dx[0], dh0, dc0, grads[:4]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("state", ["given", "none"])
@pytest.mark.parametrize(
    "size", [(5, 7, 1), (37, 19, 3), (16, 32, 4), (130, 67, 2)], ids=lambda s: "x".join(map(str, s))
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_step_matches_the_reference(cell, bias, size, state, dtype):
    inp, hid, batch = size
    stack, params = _stack(cell, inp, hid, bias, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    h0 = rng.standard_normal((batch, hid)).astype(dtype) if state == "given" else None
    c0 = rng.standard_normal((batch, hid)).astype(dtype) if state == "given" else None
    before = [a.copy() for a in (x, h0, c0) if a is not None]
    h, c = stack.direct_step(x, h0, c0 if cell == "lstm" else None)
    want_h, want_c = _reference(cell, params, x, h0, c0)
    assert h.dtype == np.dtype(dtype) and h.shape == (batch, hid)
    np.testing.assert_allclose(h, want_h, **TOL[dtype])
    if cell == "lstm":
        assert c is not None and c.shape == (batch, hid)
        np.testing.assert_allclose(c, want_c, **TOL[dtype])
    else:
        assert c is None
    for a, b in zip(before, [a for a in (x, h0, c0) if a is not None]):
        assert np.array_equal(a, b)  # the inputs are left as they were


@pytest.mark.parametrize("cell", list(GATES))
def test_direct_step_bits_do_not_depend_on_the_thread_count(cell):
    stack, _ = _stack(cell, 128, 256, True, "float32")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 128)).astype(np.float32)
    h0 = rng.standard_normal((3, 256)).astype(np.float32)
    c0 = h0[::-1].copy() if cell == "lstm" else None
    saved = rnnfast.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 1):
            rnnfast.set_num_threads(n)
            outs.append(stack.direct_step(x, h0, c0))
    finally:
        rnnfast.set_num_threads(saved)
    for h, c in outs[1:]:
        assert np.array_equal(h, outs[0][0])
        assert (c is None) == (outs[0][1] is None) and (c is None or np.array_equal(c, outs[0][1]))


def test_direct_step_reads_the_weights_as_they_are_at_each_call():
    """No packed copy to go stale: a write into the bound arrays is seen by the next call."""
    stack, params = _stack("lstm", 6, 5, True, "float32")
    x = np.ones((1, 6), np.float32)
    first = stack.direct_step(x, None, None)[0]
    params[0] *= 0.5
    params[3][:] = 1.0
    second = stack.direct_step(x, None, None)[0]
    np.testing.assert_allclose(second, _reference("lstm", params, x, None, None)[0], rtol=2e-5)
    assert not np.allclose(first, second)


def test_direct_step_of_no_rows_is_empty():
    stack, _ = _stack("gru", 4, 3, True, "float32")
    h, c = stack.direct_step(np.zeros((0, 4), np.float32), None, None)
    assert h.shape == (0, 3) and c is None


@pytest.mark.parametrize(
    "args, message",
    [
        (("lstm", 4, 3, 2, False, True, "float32"), "2 layer"),
        (("lstm", 4, 3, 1, True, True, "float32"), "2 direction"),
        (("lstm", 4, 3, 1, False, True, "float32", 2), "projection"),
        (("gru_reset_before", 4, 3, 1, False, True, "float32"), "gru_reset_before"),
    ],
)
def test_direct_step_refuses_what_it_does_not_run(args, message):
    stack = _core.Stack(*args)
    rng = np.random.default_rng(0)
    cell, inp, hid, layers, bidi = args[:5]
    proj = args[7] if len(args) > 7 else 0
    dirs = 2 if bidi else 1
    state = proj or hid
    params = []
    for layer in range(layers):
        for _ in range(dirs):
            g = GATES.get(cell, 3) * hid
            params += [rng.standard_normal((g, inp if layer == 0 else dirs * state))]
            params += [rng.standard_normal((g, state)), np.zeros(g), np.zeros(g)]
            if proj:
                params += [rng.standard_normal((proj, hid))]
    stack.set_params([p.astype(np.float32) for p in params])
    with pytest.raises(ValueError, match=message):
        stack.direct_step(np.zeros((1, inp), np.float32), None, None)
    with pytest.raises(ValueError, match=message):
        stack.direct_train_step(np.zeros((1, inp), np.float32), None, None)


@pytest.mark.parametrize(
    "x, h0, message",
    [
        (np.zeros((2, 5), np.float32), None, r"x: expected shape \(2, 4\)"),
        (np.zeros((2, 4), np.float64), None, "x: expected dtype float32"),
        (np.zeros(4, np.float32), None, "x: expected 2 dimensions"),
        (
            np.zeros((2, 4), np.float32),
            np.zeros((1, 3), np.float32),
            r"h0: expected shape \(2, 3\)",
        ),
        (np.zeros((2, 8), np.float32)[:, ::2], None, "C-contiguous"),
    ],
)
def test_direct_step_refuses_bad_arrays_by_name(x, h0, message):
    stack, _ = _stack("gru", 4, 3, True, "float32")
    with pytest.raises((ValueError, TypeError), match=message):
        stack.direct_step(x, h0, None)


@pytest.mark.parametrize("state", ["given", "none"])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_step_at_reads_the_arrays_at_those_addresses(cell, state):
    """direct_step_at (the torch cells' common call) is direct_step on memory given by address:
    the same bits, and the arrays at those addresses left as they were."""
    stack, _ = _stack(cell, 9, 6, True, "float32")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 9)).astype(np.float32)
    h0 = c0 = None
    if state == "given":
        h0 = rng.standard_normal((3, 6)).astype(np.float32)
        c0 = rng.standard_normal((3, 6)).astype(np.float32) if cell == "lstm" else None
    before = [a.copy() for a in (x, h0, c0) if a is not None]
    want = stack.direct_step(x, h0, c0)
    got = stack.direct_step_at(
        3, x.ctypes.data, 0 if h0 is None else h0.ctypes.data, 0 if c0 is None else c0.ctypes.data
    )
    for w, g in zip(want, got):
        assert (w is None and g is None) or np.array_equal(w, g)
    for b, a in zip(before, (a for a in (x, h0, c0) if a is not None)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "batch, where, message",
    [
        (0, "x", "batch: expected 1 or more rows"),
        (-2, "x", "batch: expected 1 or more rows"),
        (1 << 61, "x", "batch: expected 1 or more rows of a size that fits"),
        (1, "null x", "x: expected an address, got 0"),
        (1, "odd x", "x: expected an address aligned to 4 bytes"),
        (1, "odd h0", "h0: expected an address aligned to 4 bytes"),
    ],
)
def test_direct_step_at_refuses_what_an_address_cannot_be(batch, where, message):
    stack, _ = _stack("lstm", 4, 3, True, "float32")
    x = np.zeros((2, 8), np.float32)
    h = np.zeros((2, 8), np.float32)
    address = {"null x": 0, "odd x": x.ctypes.data + 1}.get(where, x.ctypes.data)
    h_address = h.ctypes.data + (1 if where == "odd h0" else 0)
    with pytest.raises(ValueError, match=message):
        stack.direct_step_at(batch, address, h_address, 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("state", ["given", "none"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_stack_step_is_direct_step_layer_after_layer(cell, layers, state, dtype):
    """direct_stack_step (a stacked module stepped one input at a time) gives, bit for bit,
    each layer's direct_step fed the new h of the layer below, which follows the reference."""
    inp, hid, batch = 7, 6, 3
    rng = np.random.default_rng(layers)
    per_layer = [
        _stack(cell, inp if k == 0 else hid, hid, True, dtype, seed=k) for k in range(layers)
    ]
    stack = _core.Stack(cell, inp, hid, layers, False, True, dtype)
    stack.set_params([p for _, params in per_layer for p in params])
    x = rng.standard_normal((batch, inp)).astype(dtype)
    lstm = cell == "lstm"
    h0 = c0 = None
    if state == "given":
        h0 = rng.standard_normal((layers, batch, hid)).astype(dtype)
        c0 = rng.standard_normal((layers, batch, hid)).astype(dtype) if lstm else None
    h_n, c_n = stack.direct_stack_step(x, h0, c0)
    assert h_n.shape == (layers, batch, hid) and (c_n is None) == (not lstm)
    below = x
    for k, (one, params) in enumerate(per_layer):
        h_k0 = None if h0 is None else h0[k]
        c_k0 = None if c0 is None else c0[k]
        h, c = one.direct_step(below, h_k0, c_k0)
        assert np.array_equal(h_n[k], h) and (c is None or np.array_equal(c_n[k], c))
        want_h, want_c = _reference(cell, params, below, h_k0, c_k0)
        np.testing.assert_allclose(h, want_h, **TOL[dtype])
        if lstm:
            np.testing.assert_allclose(c, want_c, **TOL[dtype])
        below = h


@pytest.mark.parametrize(
    "args, message",
    [
        (("lstm", 4, 3, 2, True), "2 direction"),
        (("lstm", 4, 3, 2, False, 2), "a projection"),
        (("gru_reset_before", 4, 3, 2), "gru_reset_before"),
    ],
)
def test_direct_stack_step_refuses_what_it_does_not_run(args, message):
    with pytest.raises(ValueError, match=message):
        _zero_stack(*args).direct_stack_step(np.zeros((1, 4), np.float32), None, None)


def test_direct_stack_step_refuses_bad_arrays_by_name():
    stack = _zero_stack("lstm", 4, 3, 2)
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 2, 3\)"):
        stack.direct_stack_step(x, np.zeros((2, 3), np.float32), None)
    with pytest.raises(ValueError, match=r"c0: expected shape \(2, 2, 3\)"):
        stack.direct_stack_step(x, None, np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="x: expected 2 dimensions"):
        stack.direct_stack_step(np.zeros((1, 2, 4), np.float32), None, None)


def _zero_stack(cell, inp, hid, layers, bidi=False, proj=0):
    """A float32 stack of zero parameters in the engine's order (layer, direction)."""
    stack = _core.Stack(cell, inp, hid, layers, bidi, True, "float32", proj)
    dirs, state, g = 2 if bidi else 1, proj or hid, GATES.get(cell, 3) * hid
    params = []
    for layer in range(layers):
        for _ in range(dirs):
            params += [np.zeros((g, inp if layer == 0 else dirs * state), np.float32)]
            params += [np.zeros((g, state), np.float32), np.zeros(g, np.float32)]
            params += [np.zeros(g, np.float32)] + (
                [np.zeros((proj, hid), np.float32)] if proj else []
            )
    stack.set_params(params)
    return stack


def test_direct_step_before_any_parameters_is_refused():
    with pytest.raises(RuntimeError, match="set_params"):
        _core.Stack("lstm", 4, 3, 1, False, True, "float32").direct_step(
            np.zeros((1, 4), np.float32), None, None
        )


def test_pooled_arrays_outlive_their_stack_and_return_their_memory():
    """Stack.pooled_empty (the gradients a backward writes): the stack's dtype, writeable, alive
    after the stack is gone; a block given back is handed out again rather than new memory."""
    stack = _core.Stack("lstm", 4, 3, 1, False, True, "float64")
    first = stack.pooled_empty(5000)
    assert first.dtype == np.float64 and first.shape == (5000,) and first.flags.writeable
    address = first.__array_interface__["data"][0]
    del first
    again = stack.pooled_empty(5000)
    assert again.__array_interface__["data"][0] == address
    again[:] = 2.5
    del stack
    assert float(again.sum()) == 12500.0  # the pool outlives the stack while arrays hold it
    assert _core.Stack("gru", 4, 3, 1, False, True, "float32").pooled_empty(0).shape == (0,)
    with pytest.raises(ValueError, match="n: expected >= 0"):
        _core.Stack("gru", 4, 3, 1, False, True, "float32").pooled_empty(-1)


def _grads(params, dtype):
    return [np.full(p.shape, np.nan, dtype) for p in params]  # written whole, never read


def _train_step(stack, params, x, h0, c0, dh, dc, dtype, input_grad=True):
    grads = _grads(params, dtype)
    stack.set_grads(grads, assign=True)
    h, c, tape = stack.direct_train_step(x, h0, c0)
    dx, dh0, dc0 = stack.direct_backward(x, h0, c0, tape, dh, dc, input_grad)
    return h, c, dx, dh0, dc0, grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("state", ["given", "none"])
@pytest.mark.parametrize(
    "size", [(5, 7, 1), (37, 19, 3), (130, 67, 2)], ids=lambda s: "x".join(map(str, s))
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_training_step_matches_the_references_backward(cell, bias, size, state, dtype):
    inp, hid, batch = size
    stack, params = _stack(cell, inp, hid, bias, dtype)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    given = state == "given"
    h0 = rng.standard_normal((batch, hid)).astype(dtype) if given else None
    c0 = rng.standard_normal((batch, hid)).astype(dtype) if given and cell == "lstm" else None
    dh = rng.standard_normal((batch, hid)).astype(dtype)
    dc = rng.standard_normal((batch, hid)).astype(dtype) if cell == "lstm" else None
    before = [a.copy() for a in (x, h0, c0, dh, dc) if a is not None]
    h, c, dx, dh0, dc0, grads = _train_step(stack, params, x, h0, c0, dh, dc, dtype)
    want_h, want_c = _reference(cell, params, x, h0, c0)
    want_dx, want_dh0, want_dc0, want_grads = _reference(cell, params, x, h0, c0, dh, dc)
    tol = TOL[dtype]
    np.testing.assert_allclose(h, want_h, **tol)
    if cell == "lstm":
        np.testing.assert_allclose(c, want_c, **tol)
    np.testing.assert_allclose(dx, want_dx, **tol)
    assert (dh0 is None) == (h0 is None) and (dc0 is None) == (c0 is None)
    if h0 is not None:
        np.testing.assert_allclose(dh0, want_dh0, **tol)
    if c0 is not None:
        np.testing.assert_allclose(dc0, want_dc0, **tol)
    for got, want in zip(grads, want_grads[: len(grads)]):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, **tol)
    for a, b in zip(before, [a for a in (x, h0, c0, dh, dc) if a is not None]):
        assert np.array_equal(a, b)  # the inputs are left as they were


def test_direct_training_steps_forward_is_the_inference_steps():
    stack, _ = _stack("gru", 20, 33, True, "float32")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 20)).astype(np.float32)
    h0 = rng.standard_normal((3, 33)).astype(np.float32)
    assert np.array_equal(
        stack.direct_train_step(x, h0, None)[0], stack.direct_step(x, h0, None)[0]
    )


def test_direct_backward_adds_to_the_gradients_unless_told_to_assign():
    stack, params = _stack("lstm", 9, 8, True, "float64")
    rng = np.random.default_rng(5)
    x, h0 = rng.standard_normal((2, 9)), rng.standard_normal((2, 8))
    dh = rng.standard_normal((2, 8))
    _h, _c, tape = stack.direct_train_step(x, h0, h0)
    fresh = _grads(params, "float64")
    stack.set_grads(fresh, assign=True)
    stack.direct_backward(x, h0, h0, tape, dh, None, False)
    added = [np.ones_like(p) for p in params]
    stack.set_grads(added, assign=False)
    stack.direct_backward(x, h0, h0, tape, dh, None, False)  # a tape serves more than once
    for a, f in zip(added, fresh):
        np.testing.assert_allclose(a, f + 1.0, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_gradients_are_direct_backward_into_new_arrays(cell, bias):
    """Without any gradients bound: the same bits as direct_backward assigning to bound ones,
    in arrays of the parameters' shapes that no later call writes."""
    stack, params = _stack(cell, 7, 6, bias, "float32")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    h0 = rng.standard_normal((3, 6)).astype(np.float32)
    c0 = h0[::-1].copy() if cell == "lstm" else None
    dh = rng.standard_normal((3, 6)).astype(np.float32)
    dc = dh[::-1].copy() if cell == "lstm" else None
    _h, _c, tape = stack.direct_train_step(x, h0, c0)
    dx, dh0, dc0, grads = stack.direct_gradients(x, h0, c0, tape, dh, dc, True)
    kept = [g.copy() for g in grads]
    bound = [np.full_like(p, np.nan) for p in params]
    stack.set_grads(bound, assign=True)
    want = stack.direct_backward(x, h0, c0, tape, dh, dc, True)
    again = stack.direct_gradients(x, h0, c0, tape, 2 * dh, dc, False)
    assert again[0] is None
    assert [g.shape for g in grads] == [p.shape for p in params]
    for got, exp in zip((dx, dh0, dc0, *grads), (*want, *bound)):
        assert (got is None) == (exp is None)
        if got is not None:
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, exp)
    for g, k in zip(grads, kept):  # the second call wrote arrays of its own
        np.testing.assert_array_equal(g, k)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("cell", list(GATES))
def test_direct_training_bits_do_not_depend_on_the_thread_count(cell, batch):
    """H = 256, I = 200: both the units split and the columns split give two threads work."""
    stack, params = _stack(cell, 200, 256, True, "float32")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, 200)).astype(np.float32)
    h0 = rng.standard_normal((batch, 256)).astype(np.float32)
    c0 = h0[::-1].copy() if cell == "lstm" else None
    dh = rng.standard_normal((batch, 256)).astype(np.float32)
    dc = dh[::-1].copy() if cell == "lstm" else None
    saved = rnnfast.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 1):
            rnnfast.set_num_threads(n)
            h, c, dx, dh0, dc0, grads = _train_step(stack, params, x, h0, c0, dh, dc, "float32")
            outs.append([a for a in (h, c, dx, dh0, dc0, *grads) if a is not None])
    finally:
        rnnfast.set_num_threads(saved)
    for out in outs[1:]:
        assert len(out) == len(outs[0])
        for a, b in zip(out, outs[0]):
            assert np.array_equal(a, b)


def test_direct_backward_uses_the_weights_its_forward_ran_with():
    """A write into the bound arrays between forward and backward (torch's `.data`) reaches
    neither that backward nor a second one of the same tape; the next forward sees it."""
    stack, params = _stack("lstm", 6, 5, True, "float64")
    rng = np.random.default_rng(7)
    x, h0, c0 = (rng.standard_normal((2, n)) for n in (6, 5, 5))
    dh = rng.standard_normal((2, 5))
    original = [p.copy() for p in params]
    _h, _c, tape = stack.direct_train_step(x, h0, c0)
    params[1] *= 0.5  # W_hh, which dh0 = W_hh^T dG multiplies by
    params[0][:] = 3.0
    grads = _grads(params, "float64")
    stack.set_grads(grads, assign=True)
    dx, dh0, _dc0 = stack.direct_backward(x, h0, c0, tape, dh, None, True)
    want_dx, want_dh0, _want_dc0, want_grads = _reference("lstm", original, x, h0, c0, dh)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh0, want_dh0, rtol=1e-12, atol=1e-13)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    h2 = stack.direct_train_step(x, h0, c0)[0]
    np.testing.assert_allclose(h2, _reference("lstm", params, x, h0, c0)[0], rtol=1e-12)


def test_direct_training_step_of_no_rows():
    stack, params = _stack("lstm", 4, 3, True, "float32")
    x, state = np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32)
    grads = _grads(params, "float32")
    stack.set_grads(grads, assign=True)
    h, c, tape = stack.direct_train_step(x, state, state)
    dx, dh0, dc0 = stack.direct_backward(x, state, state, tape, state, state, True)
    assert h.shape == c.shape == dh0.shape == dc0.shape == (0, 3) and dx.shape == (0, 4)
    assert all(not g.any() for g in grads)  # assigned: a sum over no rows is zero


def test_direct_backward_refuses_bad_arguments_by_name():
    stack, params = _stack("gru", 4, 3, True, "float32")
    x = np.zeros((2, 4), np.float32)
    _, _, tape = stack.direct_train_step(x, None, None)
    with pytest.raises(RuntimeError, match="set_grads"):
        stack.direct_backward(x, None, None, tape, None, None, True)
    stack.set_grads(_grads(params, "float32"), assign=True)
    with pytest.raises(ValueError, match=r"dh: expected shape \(2, 3\)"):
        stack.direct_backward(x, None, None, tape, np.zeros((1, 3), np.float32), None, True)
    with pytest.raises(ValueError, match=r"tape: expected shape \(1, 12\)"):
        stack.direct_backward(x[:1], None, None, tape, None, None, True)  # another batch's tape
    with pytest.raises(TypeError):
        stack.direct_backward(x, None, None, np.zeros((2, 12), np.float32), None, None, True)
    other, other_params = _stack("gru", 4, 3, True, "float64")
    other.set_grads(_grads(other_params, "float64"), assign=True)
    with pytest.raises(ValueError, match="another dtype"):
        other.direct_backward(x.astype(np.float64), None, None, tape, None, None, True)


def test_direct_training_steps_from_several_threads_match_one_at_a_time():
    """Threads sharing a stack (one module stepped by several Python threads, each releasing
    the GIL in C++) get what each call gets alone; the gradients are per call (set_grads is
    bound again before each backward, as rnnfast.torch does under its lock)."""
    stack, params = _stack("lstm", 24, 40, True, "float32")
    rng = np.random.default_rng(8)
    inputs = [rng.standard_normal((2, 24)).astype(np.float32) for _ in range(6)]
    alone = [stack.direct_train_step(x, None, None)[:2] for x in inputs]
    lock = threading.Lock()
    errors: list[BaseException] = []
    got: dict[int, list] = {}

    def work(i: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(20):
                h, c, tape = stack.direct_train_step(inputs[i], None, None)
                with lock:
                    grads = _grads(params, "float32")
                    stack.set_grads(grads, assign=True)
                    stack.direct_backward(inputs[i], None, None, tape, h, c, False)
                got[i] = [h, c, *grads]
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    barrier = threading.Barrier(len(inputs))
    workers = [threading.Thread(target=work, args=(i, barrier)) for i in range(len(inputs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors and len(got) == len(inputs)
    for i, x in enumerate(inputs):
        h, c = alone[i]
        assert np.array_equal(got[i][0], h) and np.array_equal(got[i][1], c)
        grads = _grads(params, "float32")
        stack.set_grads(grads, assign=True)
        tape = stack.direct_train_step(x, None, None)[2]
        stack.direct_backward(x, None, None, tape, h, c, False)
        for a, b in zip(got[i][2:], grads):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("where", ["w_ih first", "w_ih last", "w_hh middle", "w_hh last"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_one_value_write_between_steps_reaches_the_next_steps_backward(where, threads):
    """The kept copy of the weights is compared a few rows at a time (direct_step.cpp): a write
    of a single value anywhere, on any thread's rows, gives the next step a fresh copy, so its
    backward multiplies by the new weights. H = 40 gives each gate's rows several chunks and
    both threads rows of their own."""
    stack, params = _stack("lstm", 24, 40, True, "float64")
    rng = np.random.default_rng(9)
    x, h0, c0 = (rng.standard_normal((2, n)) for n in (24, 40, 40))
    dh = rng.standard_normal((2, 40))
    which, at = {
        "w_ih first": (0, 0),
        "w_ih last": (0, -1),
        "w_hh middle": (1, params[1].size // 2 + 3),
        "w_hh last": (1, -1),
    }[where]
    saved = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(threads)
        stack.direct_train_step(x, h0, c0)  # the copy of the weights as they are
        params[which].reshape(-1)[at] += 0.75
        _, _, dx, dh0, _, grads = _train_step(stack, params, x, h0, c0, dh, None, "float64")
    finally:
        rnnfast.set_num_threads(saved)
    want_dx, want_dh0, _, want_grads = _reference("lstm", params, x, h0, c0, dh)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh0, want_dh0, rtol=1e-12, atol=1e-13)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
