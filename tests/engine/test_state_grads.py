"""backward(..., return_state_grads=True): dL/dh_t (and dL/dc_t) of every step, layer and direction.

The reference's values are checked by finite differences: dL/dh_t is dy_t plus the gradient, with
respect to its initial state, of the loss of the rest of the sequence run from (h_t, c_t). The C++
engine is checked against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RTOL, assert_close, make_pair, numeric_grad, state_arrays
from test_parity import _inputs

import rnnfast
from rnnfast import reference

VARIANTS = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {}),
    ("LSTM", {"proj_size": 2}),
    ("GRU", {"linear_before_reset": True}),
    ("GRU", {"linear_before_reset": False}),
]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_reset_before"]


@pytest.mark.parametrize(("cls", "kw"), VARIANTS, ids=IDS)
def test_reference_state_grads_match_finite_differences(cls, kw):
    m = getattr(reference, cls)(3, 4, dtype=np.float64, seed=2, **kw)
    with m.params.writable() as params:
        for p in params.values():
            p *= 1.5
    rng = np.random.default_rng(0)
    steps, batch = 5, 2
    x = rng.standard_normal((steps, batch, 3))
    y, s_n, tape = m.forward(x)
    wy = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(s.shape) for s in state_arrays(s_n)]
    lstm = cls == "LSTM"
    _, _, grads = m.backward(tape, wy, tuple(ws) if lstm else ws[0], return_state_grads=True)
    dhs, dcs = grads if lstm else (grads, None)
    assert dhs.shape == (1, steps, batch, m._state_size)
    for t in range(steps):
        # The state after step t, and the loss of the steps after it run from there.
        _, s_t, _ = m.forward(x[: t + 1], training=False)
        h_t, c_t = (s_t[0].copy(), s_t[1].copy()) if lstm else (s_t.copy(), None)

        rest = _rest_of_run(m, x[t + 1 :], wy[t + 1 :], ws, h_t, c_t)
        np.testing.assert_allclose(
            dhs[0, t], wy[t] + numeric_grad(rest, h_t)[0], rtol=1e-6, atol=1e-8, err_msg=f"dh {t}"
        )
        if lstm:  # c_t reaches the loss through h_t = W_hr (o_t * tanh(c_t)) too
            o_t = m.forward(x)[2]._saved["caches"][0][t]["o"]
            w_hr = m.projection(0, 0)

            def through_h(c_t=c_t, h_t=h_t, o_t=o_t, w_hr=w_hr, rest=rest, wy_t=wy[t]) -> float:
                m_t = o_t * np.tanh(c_t[0])
                h_t[0] = m_t if w_hr is None else m_t @ w_hr.T
                return float(np.sum(h_t[0] * wy_t)) + rest()

            np.testing.assert_allclose(
                dcs[0, t], numeric_grad(through_h, c_t)[0], rtol=1e-6, atol=1e-8, err_msg=f"dc {t}"
            )


def _rest_of_run(m, x_rest, wy_rest, ws, h_t, c_t):
    """The loss of the steps x_rest run from the state (h_t, c_t) (arrays perturbed in place)."""

    def rest() -> float:
        state = (h_t, c_t) if c_t is not None else h_t
        y_r, s_r, _ = m.forward(x_rest, state, training=False)
        end = state_arrays(s_r)
        return float(np.sum(y_r * wy_rest) + sum(np.sum(s * w) for s, w in zip(end, ws)))

    return rest


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_steps_past_a_length_are_zero_and_the_rest_is_the_shorter_run(engine):
    m = engine.GRU(3, 4, 2, bidirectional=True, dtype=np.float64, seed=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((6, 2, 8))
    _, _, tape = m.forward(x, lengths=[6, 3])
    _, _, dhs = m.backward(tape, dy, return_state_grads=True)
    assert np.all(dhs[:, 3:, 1] == 0)
    _, _, tape_short = m.forward(x[:3, 1:])  # the second sequence alone, 3 steps
    _, _, dhs_short = m.backward(tape_short, dy[:3, 1:], return_state_grads=True)
    np.testing.assert_allclose(dhs[:, :3, 1:], dhs_short, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("batch", "hidden"), [(5, 7), (1, 300)], ids=["rows", "units"])
@pytest.mark.parametrize(("cls", "kw"), VARIANTS, ids=IDS)
def test_fast_matches_reference(cls, kw, batch, hidden, dtype, nthreads, threads):
    threads(nthreads)
    fast, ref = make_pair(
        cls,
        kw,
        input_size=4,
        hidden_size=hidden,
        num_layers=2,
        bidirectional=True,
        batch_first=True,
        dtype=dtype,
        seed=3,
    )
    x, state, dy, ds = _inputs(cls, fast, 6, batch, np.random.default_rng(2))
    lengths = [6, 2, 5, 1, 3][:batch]
    to64 = (lambda a: a.astype(np.float64)) if dtype != np.float64 else (lambda a: a)
    outs = []
    for m, cast in ((fast, lambda a: a), (ref, to64)):
        st = tuple(map(cast, state)) if isinstance(state, tuple) else cast(state)
        d_st = tuple(map(cast, ds)) if isinstance(ds, tuple) else cast(ds)
        _, _, tape = m.forward(cast(x), st, lengths)
        outs.append(m.backward(tape, cast(dy), d_st, return_state_grads=True)[2])
    for got, want in zip(state_arrays(outs[0]), state_arrays(outs[1])):
        assert got.shape == (4, batch, 6, want.shape[-1])  # batch_first: (L*D, B, T, S)
        assert_close(got, want, RTOL[np.dtype(dtype)], "state grads")


def test_the_plain_return_is_unchanged_and_bad_flags_are_refused():
    m = rnnfast.LSTM(3, 4)
    x = np.zeros((2, 1, 3), np.float32)
    _, _, tape = m.forward(x)
    assert len(m.backward(tape)) == 2
    _, _, tape = m.forward(x)
    with pytest.raises(TypeError, match="return_state_grads"):
        m.backward(tape, return_state_grads="yes")
