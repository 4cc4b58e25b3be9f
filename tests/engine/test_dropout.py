"""Dropout between stacked layers (torch.nn.RNN's `dropout`), in both engines.

The masks are a function of a key (rnnfast.reference.dropout_factors): the C++ engine must apply
exactly the reference's, in forward and backward; the reference's gradients are checked by finite
differences with the key fixed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, RTOL, make_pair, numeric_grad, state_arrays
from test_parity import _inputs

import rnnfast
from rnnfast import reference

CELLS_P = [*CELLS, ("LSTM", {"proj_size": 3})]
CELL_IDS_P = [*CELL_IDS, "lstm_proj"]


def _run(module, x, state, lengths, dy, ds, key):
    module.zero_grad()
    y, s_n, tape = module.forward(x, state, lengths, dropout_key=key)
    assert tape.dropout_key == key
    dx, ds0 = module.backward(tape, dy, ds)
    return [y, *state_arrays(s_n), dx, *state_arrays(ds0), *module.grads.values()]


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("p", [0.25, 0.7, 1.0])
@pytest.mark.parametrize(("cls", "kw"), CELLS_P, ids=CELL_IDS_P)
def test_fast_applies_the_reference_masks(cls, kw, p, dtype, nthreads, threads):
    threads(nthreads)
    fast, ref = make_pair(
        cls,
        kw,
        input_size=5,
        hidden_size=7,
        num_layers=3,
        bidirectional=True,
        dropout=p,
        dtype=dtype,
        seed=4,
    )
    rng = np.random.default_rng(1)
    x, state, dy, ds = _inputs(cls, fast, 6, 5, rng)
    lengths = [6, 2, 5, 1, 3]
    got = _run(fast, x, state, lengths, dy, ds, 2**64 - 5)
    to64 = (lambda a: a.astype(np.float64)) if dtype != np.float64 else (lambda a: a)
    st = tuple(map(to64, state)) if isinstance(state, tuple) else to64(state)
    d_st = tuple(map(to64, ds)) if isinstance(ds, tuple) else to64(ds)
    want = _run(ref, to64(x), st, lengths, to64(dy), d_st, 2**64 - 5)
    rtol = RTOL[np.dtype(dtype)]
    for i, (a, b) in enumerate(zip(got, want)):
        scale = float(np.abs(b).max()) if b.size else 0.0
        err = float(np.abs(a.astype(np.float64) - b).max()) if b.size else 0.0
        assert err <= rtol * max(scale, 1e-30), f"output {i}: {err} > {rtol} * {scale}"


@pytest.mark.parametrize(("cls", "kw"), CELLS_P, ids=CELL_IDS_P)
def test_reference_gradients_with_dropout_match_finite_differences(cls, kw):
    m = getattr(reference, cls)(
        3, 4, 2, bidirectional=True, dropout=0.4, dtype=np.float64, seed=2, **kw
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3))
    key = 77
    y, s_n, tape = m.forward(x, None, [4, 2], dropout_key=key)
    wy = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(s.shape) for s in state_arrays(s_n)]
    m.zero_grad()
    dx, _ = m.backward(tape, wy, tuple(ws) if len(ws) == 2 else ws[0])

    def loss() -> float:  # the same masks: the loss is a smooth function of x and the weights
        y_, s_, _ = m.forward(x, None, [4, 2], training=False, dropout=True, dropout_key=key)
        return float(np.sum(y_ * wy) + sum(np.sum(s * w) for s, w in zip(state_arrays(s_), ws)))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    with m.params.writable() as params:
        for name, p in params.items():
            np.testing.assert_allclose(
                m.grads[name], numeric_grad(loss, p), rtol=1e-6, atol=1e-8, err_msg=name
            )


def test_masks_have_the_right_rate_scale_and_independence():
    n, p = 1_000_000, 0.3
    a = reference.dropout_factors(n, p, 12345, 0, np.float32)
    b = reference.dropout_factors(n, p, 12345, 1, np.float32)
    c = reference.dropout_factors(n, p, 12346, 0, np.float32)
    sigma = np.sqrt(p * (1 - p) / n)
    for f in (a, b, c):
        assert abs(np.mean(f == 0) - p) < 6 * sigma
        assert set(np.unique(f)) == {np.float32(0), np.float32(1) / np.float32(0.7)}
    both = p * p + (1 - p) * (1 - p)  # two independent masks agree this often
    for f, g in ((a, b), (a, c)):
        assert abs(np.mean((f == 0) == (g == 0)) - both) < 6 * np.sqrt(both * (1 - both) / n)
    assert np.all(reference.dropout_factors(1000, 1.0, 3, 0, np.float64) == 0)
    assert np.all(reference.dropout_factors(1000, 0.0, 3, 0, np.float64) == 1)


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_when_dropout_applies_and_how_keys_repeat_it(engine):
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    m = engine.GRU(4, 6, 3, dropout=0.5, seed=9)
    y_inf, _ = m(x)
    y_nodrop, _, _ = m.forward(x, dropout=False)
    np.testing.assert_array_equal(y_nodrop, y_inf)  # inference and dropout=False: no masks
    y1, _, t1 = m.forward(x)
    y2, _, t2 = m.forward(x)
    assert t1.dropout_key is not None and t1.dropout_key != t2.dropout_key
    assert not np.array_equal(y1, y_inf) and not np.array_equal(y1, y2)  # fresh masks each call
    y1_again, _, _ = m.forward(x, dropout_key=t1.dropout_key)
    np.testing.assert_array_equal(y1_again, y1)
    y_eval, _, tape = m.forward(x, training=False, dropout=True, dropout_key=t1.dropout_key)
    assert tape is None
    np.testing.assert_array_equal(y_eval, y1)
    twin = engine.GRU(4, 6, 3, dropout=0.5, seed=9)  # a seeded module repeats its keys
    np.testing.assert_array_equal(twin.forward(x)[0], y1)
    assert m.forward(x, dropout=False)[2].dropout_key is None
    assert "dropout=0.5" in repr(m)


def test_dropout_is_bitwise_equal_across_threads(threads):
    out = []
    for count in (1, 2, 3):
        threads(count)
        m = rnnfast.LSTM(16, 64, 3, dropout=0.3, seed=1)
        x = np.random.default_rng(2).standard_normal((20, 9, 16)).astype(np.float32)
        y, _, tape = m.forward(x, dropout_key=5)
        dx, _ = m.backward(tape, np.ones_like(y))
        out.append(y.tobytes() + dx.tobytes() + b"".join(g.tobytes() for g in m.grads.values()))
    assert out[0] == out[1] == out[2]


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_p_one_cuts_the_stack_where_torch_does(cls):
    """With p = 1 every value between layers is dropped: the top layer sees zeros, as in torch
    (whose masks differ, but not at p = 0 or 1)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls)(4, 5, 3, dropout=1.0).double().train()
    m = getattr(rnnfast, cls)(4, 5, 3, dropout=1.0, dtype=np.float64)
    m.load_state_dict({k: t.detach().numpy() for k, t in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 2, 4))
    yt, _ = tm(torch.from_numpy(x))
    y, _, _ = m.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    y_eval, _ = m(x)
    assert not np.allclose(y_eval, y)


def test_step_never_drops():
    m = rnnfast.LSTM(3, 4, 2, dropout=0.9, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y, _ = m(x)
    state = None
    for t in range(4):
        out, state = m.step(x[t], state)
        np.testing.assert_array_equal(out, y[t])


def test_one_layer_warns_and_bad_arguments_are_refused():
    with pytest.warns(UserWarning, match="num_layers=1"):
        rnnfast.LSTM(3, 4, dropout=0.5)
    for bad, error in [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError)]:
        with pytest.raises(error, match=r"dropout: expected a number in \[0, 1\]"):
            rnnfast.GRU(3, 4, 2, dropout=bad)
    for bad in ["0.5", True, None]:
        with pytest.raises(TypeError, match="dropout"):
            rnnfast.GRU(3, 4, 2, dropout=bad)
    m = rnnfast.GRU(3, 4, 2, dropout=0.5)
    x = np.zeros((2, 1, 3), np.float32)
    for key, error in [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="dropout_key"):
            m.forward(x, dropout_key=key)
    with pytest.raises(TypeError, match="dropout"):
        m.forward(x, dropout="yes")
    with pytest.raises(ValueError, match="dropout"):  # the core checks its own arguments
        m._stack.forward(x, None, None, None, False, 0, 1.5, 0)
