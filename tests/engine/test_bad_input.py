"""Bad input gets a clear ValueError/TypeError naming the argument; inputs are never modified."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, make
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnfast
from rnnfast import _core, reference


@pytest.fixture
def lstm():
    return rnnfast.LSTM(4, 3, num_layers=2, seed=0)


def x_ok(steps=5, batch=2, size=4, dtype=np.float32):
    return np.random.default_rng(0).standard_normal((steps, batch, size)).astype(dtype)


def test_wrong_ndim(lstm):
    msg = r"x: expected 3 dimensions \(T, B, I\), or 2 \(T, I\) for one sequence, got 1"
    with pytest.raises(ValueError, match=msg):
        lstm(x_ok()[:, 0, 0])  # (T, I) is one sequence, as in torch.nn


def test_wrong_ndim_batch_first_names_layout():
    m = rnnfast.GRU(4, 3, batch_first=True)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, T, I\), or 2 .*got 4"):
        m(x_ok()[None])


def test_wrong_input_size(lstm):
    with pytest.raises(ValueError, match=r"x: expected input size \(last dimension\) 4, got 6"):
        lstm(x_ok(size=6))


def test_dtype_not_matching_module(lstm):
    with pytest.raises(TypeError, match=r"x: expected dtype float32 .* got float64"):
        lstm(x_ok(dtype=np.float64))


@pytest.mark.parametrize("bad", [np.complex64(1), "abc", object()])
def test_non_real_dtype_refused(lstm, bad):
    with pytest.raises(TypeError, match=r"x: expected a real floating array"):
        lstm(np.full((2, 1, 4), bad))


def test_integer_input_converted_when_exact(lstm):
    xi = np.arange(40).reshape(5, 2, 4)
    y, _ = lstm(xi)
    np.testing.assert_array_equal(y, lstm(xi.astype(np.float32))[0])


def test_integer_input_refused_when_inexact(lstm):
    xi = np.full((5, 2, 4), 2**24 + 1, dtype=np.int64)
    with pytest.raises(TypeError, match=r"x: integer values cannot be represented exactly"):
        lstm(xi)


@pytest.mark.parametrize("lengths", [[0, 5], [5, 6], [-1, 2]])
def test_lengths_out_of_range(lstm, lengths):
    with pytest.raises(ValueError, match=r"lengths: expected every value in \[1, 5\]"):
        lstm(x_ok(), lengths=lengths)


def test_lengths_wrong_count(lstm):
    with pytest.raises(
        ValueError, match=r"lengths: expected 2 values \(one per batch element\), got 3"
    ):
        lstm(x_ok(), lengths=[1, 2, 3])


def test_lengths_not_integers(lstm):
    with pytest.raises(TypeError, match=r"lengths: expected integers, got dtype float64"):
        lstm(x_ok(), lengths=[1.0, 2.0])


@pytest.mark.parametrize(
    ("arg", "value", "exc"),
    [
        ("hidden_size", 0, ValueError),
        ("input_size", -1, ValueError),
        ("num_layers", 0, ValueError),
        ("hidden_size", 2.5, TypeError),
        ("hidden_size", True, TypeError),
    ],
)
def test_bad_sizes(arg, value, exc):
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 1, arg: value}
    with pytest.raises(exc, match=rf"{arg}: expected an integer"):
        rnnfast.GRU(**kwargs)


def test_bad_module_options():
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"):
        rnnfast.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64, got int32"):
        rnnfast.RNN(3, 4, dtype=np.int32)


def test_tape_used_twice(lstm):
    _, _, tape = lstm.forward(x_ok())
    lstm.backward(tape)
    with pytest.raises(ValueError, match=r"tape: already used by backward"):
        lstm.backward(tape)


def test_tape_from_another_module(lstm):
    other = rnnfast.LSTM(4, 3, num_layers=2, seed=0)
    _, _, tape = other.forward(x_ok())
    with pytest.raises(ValueError, match=r"tape: it was made by another module"):
        lstm.backward(tape)


def test_not_a_tape(lstm):
    with pytest.raises(TypeError, match=r"tape: expected the Tape returned by forward"):
        lstm.backward(None)
    _, _, tape = lstm.forward(x_ok(), training=False)
    assert tape is None


def test_state_wrong_shape(lstm):
    h = np.zeros((2, 3, 3), np.float32)  # batch 3, input has 2
    with pytest.raises(
        ValueError, match=r"state\[h\]: expected shape \(2, 2, 3\) .* got \(2, 3, 3\)"
    ):
        lstm(x_ok(), (h, h))
    with pytest.raises(TypeError, match=r"state: expected a pair \(h, c\) for LSTM"):
        lstm(x_ok(), np.zeros((2, 2, 3), np.float32))
    gru = rnnfast.GRU(4, 3)
    with pytest.raises(ValueError, match=r"state: expected 3 dimensions"):
        gru(x_ok(), np.zeros((2, 3), np.float32))


def test_dy_and_dstate_wrong_shape(lstm):
    _, _, tape = lstm.forward(x_ok())
    with pytest.raises(
        ValueError, match=r"dy: expected shape \(5, 2, 3\) \(the shape of y\), got \(5, 2, 4\)"
    ):
        lstm.backward(tape, np.zeros((5, 2, 4), np.float32))
    bad = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dstate_n\[h\]: expected shape \(2, 2, 3\)"):
        lstm.backward(tape, None, (bad, bad))
    lstm.backward(tape)  # a refused call does not use up the tape


def test_replaced_parameter_with_wrong_shape(lstm):
    with pytest.raises(
        ValueError, match=r"params\['weight_hh_l1'\]: expected shape \(12, 3\), got \(12, 4\)"
    ):
        lstm.params["weight_hh_l1"] = np.zeros((12, 4), np.float32)
    with pytest.raises(ValueError, match=r"assignment destination is read-only"):
        lstm.params["weight_hh_l1"][0, 0] = 1.0  # in place only inside params.writable()
    lstm(x_ok())


def test_load_state_dict_checks_keys_and_shapes(lstm):
    sd = lstm.state_dict()
    del sd["bias_ih_l0"]
    with pytest.raises(KeyError, match=r"missing keys \['bias_ih_l0'\]"):
        lstm.load_state_dict(sd)
    sd = lstm.state_dict()
    before = lstm.state_dict()
    sd["weight_ih_l1"] = np.zeros((12, 5))
    sd["weight_ih_l0"] = np.ones((12, 4))
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l1'\]: expected shape \(12, 3\)"):
        lstm.load_state_dict(sd)
    for k, val in before.items():  # nothing was loaded
        np.testing.assert_array_equal(lstm.params[k], val)


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_non_contiguous_fortran_and_readonly_inputs_are_handled(engine):
    m = engine.GRU(4, 3, bidirectional=True, seed=1)
    x = x_ok(steps=6, batch=4)
    y_ref, h_ref = m(x)
    fortran = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, readonly):
        assert not (variant.flags.c_contiguous and variant.flags.writeable)
        y, h = m(variant)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(h, h_ref)
        _, _, tape = m.forward(variant)
        m.backward(tape, np.ones_like(y_ref))


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_inputs_never_modified(cls, kw):
    m = make(rnnfast, cls, kw, input_size=4, hidden_size=3, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 3)).astype(np.float32)
    state = (h0, h0.copy()) if cls == "LSTM" else h0
    dy = rng.standard_normal((5, 2, 6)).astype(np.float32)
    keep = [a.copy() for a in (x, h0, dy)]
    params = m.state_dict()
    _, s_n, tape = m.forward(x, state, [5, 3])
    x[:] = 0  # changing x after forward must not change backward's answer
    dx, _ = m.backward(tape, dy, s_n)
    x[:] = keep[0]
    m2 = make(rnnfast, cls, kw, input_size=4, hidden_size=3, bidirectional=True, seed=0)
    _, s2, tape2 = m2.forward(x, state, [5, 3])
    dx2, _ = m2.backward(tape2, dy, s2)
    np.testing.assert_array_equal(dx, dx2)
    for a, b in zip((x, h0, dy), keep):
        np.testing.assert_array_equal(a, b)
    for k, val in params.items():
        np.testing.assert_array_equal(m.params[k], val)


def test_core_refuses_bad_arrays_itself():
    """The binding checks shapes, dtypes and output arrays even when called directly."""
    stack = _core.Stack("gru", 4, 3, 1, False, False, "float32")
    w_ih, w_hh = np.zeros((9, 4), np.float32), np.zeros((9, 3), np.float32)
    with pytest.raises(
        ValueError, match=re.escape("params[0]: expected shape (9, 4), got (12, 4)")
    ):
        stack.set_params([np.zeros((12, 4), np.float32), w_hh])
    with pytest.raises(ValueError, match=r"params: expected 2 arrays, got 1"):
        stack.set_params([w_ih])
    stack.set_params([w_ih, w_hh])
    ro = np.zeros((9, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[0\]: expected a writeable array"):
        stack.set_grads([ro, w_hh.copy()])
    with pytest.raises(TypeError, match=r"grads\[1\]: expected dtype float32, got float64"):
        stack.set_grads([w_ih.copy(), w_hh.astype(np.float64)])
    stack.set_grads([w_ih.copy(), w_hh.copy()])
    x = np.zeros((3, 2, 4), np.float32)
    stack.forward(x, None, None, None, True, 0)
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\], got 4"):
        stack.forward(x, None, None, np.array([4, 1]), False, 0)
    with pytest.raises(
        ValueError, match=r"x: expected a float array \(T, B, I\), or int64 indices of one-hot"
    ):
        stack.forward(x.astype(np.int64), None, None, None, False, 0)
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        stack.forward(x.astype(np.float64), None, None, None, False, 0)
    with pytest.raises(ValueError, match=r"x: expected a C-contiguous array"):
        stack.forward(
            np.zeros((3, 4, 2), np.float32).transpose(0, 2, 1), None, None, None, False, 0
        )
    with pytest.raises(ValueError, match=re.escape("h0: expected shape (1, 2, 3), got (1, 1, 3)")):
        stack.forward(x, np.zeros((1, 1, 3), np.float32), None, None, False, 0)
    with pytest.raises(ValueError, match=r"cell: expected rnn_tanh, rnn_relu, lstm, gru"):
        _core.Stack("tcn", 4, 3, 1, False, False, "float32")
    other = _core.Stack("gru", 4, 3, 1, False, False, "float32")
    other.set_params([w_ih, w_hh])
    other.set_grads([w_ih.copy(), w_hh.copy()])
    _, _, _, tape = other.forward(x, None, None, None, True, 0)
    with pytest.raises(ValueError, match=r"tape: it was made by another module"):
        stack.backward(tape, None, None, None, True)
    other.backward(tape, None, None, None, True)
    with pytest.raises(ValueError, match=r"tape: already used by backward"):
        other.backward(tape, None, None, None, True)


def test_set_num_threads_checks_its_argument(threads):
    with pytest.raises(ValueError, match=r"n: expected a number of threads in \[1, 1024\], got 0"):
        rnnfast.set_num_threads(0)
    threads(1)
    assert rnnfast.get_num_threads() == 1


@settings(max_examples=60, deadline=None)
@given(
    cell=st.sampled_from(range(len(CELLS))),
    steps=st.integers(0, 6),
    batch=st.integers(0, 5),
    isz=st.integers(1, 6),
    hsz=st.integers(1, 6),
    layers=st.integers(1, 2),
    bi=st.booleans(),
    data=st.data(),
)
def test_random_shapes_and_lengths_match_reference(cell, steps, batch, isz, hsz, layers, bi, data):
    """Property: any valid shape and lengths run, and agree with the reference (float64)."""
    cls, kw = CELLS[cell]
    shape = dict(input_size=isz, hidden_size=hsz, num_layers=layers, bidirectional=bi)
    fast = make(rnnfast, cls, kw, **shape, dtype=np.float64, seed=0)
    ref = make(reference, cls, kw, **shape, dtype=np.float64, seed=0)
    lengths = None
    if steps > 0 and data.draw(st.booleans()):
        lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    x = np.random.default_rng(steps * 7 + batch).standard_normal((steps, batch, isz))
    yf, _, tf = fast.forward(x, None, lengths)
    yr, _, tr = ref.forward(x, None, lengths)
    np.testing.assert_allclose(yf, yr, rtol=1e-10, atol=1e-12)
    dxf, _ = fast.backward(tf, np.ones_like(yf))
    dxr, _ = ref.backward(tr, np.ones_like(yr))
    np.testing.assert_allclose(dxf, dxr, rtol=1e-10, atol=1e-12)
