"""Backward into gradient arrays bound with `set_grads(arrays, assign=True)`: the engine writes
every element (what the arrays held is ignored), to the same bits as adding to zeros. The torch
drop-in binds fresh np.empty arrays so; an element left unwritten would show here as NaN."""

from __future__ import annotations

import numpy as np
import pytest

import rnnfast

CASES = {
    "rnn_relu 2 layers bidirectional": lambda: rnnfast.RNN(
        5, 4, 2, nonlinearity="relu", bidirectional=True, seed=0
    ),
    "lstm": lambda: rnnfast.LSTM(5, 4, seed=0),
    "lstm no bias": lambda: rnnfast.LSTM(5, 4, bias=False, seed=0),
    "lstm proj peepholes": lambda: rnnfast.LSTM(5, 4, proj_size=2, peepholes=True, seed=0),
    "gru 2 layers": lambda: rnnfast.GRU(5, 4, 2, seed=0),
    "gru reset before": lambda: rnnfast.GRU(5, 4, linear_before_reset=False, seed=0),
}


def _backward(m, x, lengths, grads, assign, precision):
    stack = m._stack
    stack.set_grads(grads, assign=assign)
    try:
        y, _, _, tape = stack.forward(x, None, None, lengths, True, 0, 0.0, 0, precision)
        dy = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
        stack.backward(tape, dy, None, None, True)
    finally:
        stack.set_grads(m._ordered(m.grads))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["rows", "ids"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_assigned_gradients_equal_those_added_to_zeros(case, one_hot, precision):
    m = CASES[case]()
    rng = np.random.default_rng(0)
    if one_hot:
        x = rng.integers(0, 5, (3, 2)).astype(np.int64)
    else:
        x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    lengths = np.array([3, 2])
    ordered = m._ordered(m.grads)
    added = [np.zeros_like(g) for g in ordered]
    written = [np.full_like(g, np.nan) for g in ordered]
    _backward(m, x, lengths, added, False, precision)
    _backward(m, x, lengths, written, True, precision)
    for a, w in zip(added, written):
        assert not np.isnan(w).any()
        np.testing.assert_array_equal(w, a)
        assert np.abs(a).max() > 0


def test_adding_mode_still_adds():
    m = rnnfast.LSTM(5, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    once = [np.zeros_like(g) for g in m._ordered(m.grads)]
    twice = [np.zeros_like(g) for g in m._ordered(m.grads)]
    _backward(m, x, None, once, False, "fp32")
    _backward(m, x, None, twice, False, "fp32")
    _backward(m, x, None, twice, False, "fp32")
    for a, b in zip(once, twice):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-6)


def test_an_empty_batch_writes_zeros():
    m = rnnfast.GRU(5, 4, seed=0)
    written = [np.full_like(g, np.nan) for g in m._ordered(m.grads)]
    _backward(m, np.zeros((3, 0, 5), np.float32), None, written, True, "fp32")
    for w in written:
        np.testing.assert_array_equal(w, 0)
