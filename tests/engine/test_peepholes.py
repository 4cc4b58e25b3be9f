"""LSTM peepholes (i and f see c_{t-1}, o sees c_t; weight_p_l{k} = (p_i, p_f, p_o)) in both
engines: the reference checked by finite differences, the C++ engine against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RTOL, check_gradients_by_finite_differences, make_pair
from test_parity import _compare, _inputs

import rnnfast
from rnnfast import reference


def _with_peepholes(m, seed=3):
    """Peepholes large enough to matter (PyTorch-style init would make them small)."""
    with m.params.writable() as p:
        for name in p:
            if name.startswith("weight_p"):
                p[name][...] = np.random.default_rng(seed).uniform(-1.5, 1.5, p[name].shape)
    return m


@pytest.mark.parametrize(
    "cfg",
    [
        dict(num_layers=1, bidirectional=False, bias=True, proj_size=0, lengths=None),
        dict(num_layers=1, bidirectional=False, bias=False, proj_size=0, lengths=None),
        dict(num_layers=2, bidirectional=True, bias=True, proj_size=0, lengths=[3, 1]),
        dict(num_layers=1, bidirectional=True, bias=True, proj_size=2, lengths=[2, 3]),
    ],
    ids=["plain", "no_bias", "deep_bi_lengths", "projected"],
)
def test_reference_gradients_match_finite_differences(cfg):
    cfg = dict(cfg)
    lengths = cfg.pop("lengths")
    m = _with_peepholes(reference.LSTM(3, 4, peepholes=True, dtype=np.float64, seed=1, **cfg))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 3))
    layers = m.num_layers * m.num_directions
    state = (rng.standard_normal((layers, 2, m._state_size)), rng.standard_normal((layers, 2, 4)))
    assert any(name.startswith("weight_p") for name in m.grads)
    check_gradients_by_finite_differences(m, x, state, lengths)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    ("steps", "batch", "hidden", "proj"),
    [(6, 4, 7, 0), (9, 70, 37, 0), (12, 1, 300, 0), (6, 5, 9, 4)],
    ids=["small", "blocks", "units", "projected"],
)
def test_fast_matches_reference(steps, batch, hidden, proj, dtype, nthreads, threads):
    threads(nthreads)
    fast, ref = make_pair(
        "LSTM",
        {"peepholes": True, "proj_size": proj},
        input_size=5,
        hidden_size=hidden,
        num_layers=2,
        bidirectional=True,
        dtype=dtype,
        seed=2,
    )
    _with_peepholes(fast)
    ref.load_state_dict(fast.state_dict())
    x, state, dy, ds = _inputs("LSTM", fast, steps, batch, np.random.default_rng(1))
    lengths = [steps - i % steps for i in range(batch)]
    _compare(fast, ref, x, state, lengths, dy, ds, RTOL[np.dtype(dtype)])


def test_bitwise_across_threads_and_step_equals_forward(threads):
    out = []
    for count in (1, 2, 3):
        threads(count)
        m = _with_peepholes(rnnfast.LSTM(8, 80, 2, peepholes=True, seed=4))
        x = np.random.default_rng(5).standard_normal((10, 6, 8)).astype(np.float32)
        y, _, tape = m.forward(x, lengths=[10, 3, 7, 10, 1, 5])
        m.backward(tape, np.ones_like(y))
        out.append(y.tobytes() + b"".join(g.tobytes() for g in m.grads.values()))
    assert out[0] == out[1] == out[2]
    y, _ = m(x)
    state = None
    for t in range(10):
        y_t, state = m.step(x[t], state)
        np.testing.assert_array_equal(y_t, y[t])


def test_parameters_and_bad_arguments():
    m = rnnfast.LSTM(3, 4, 2, peepholes=True, bidirectional=True)
    assert m.params["weight_p_l1_reverse"].shape == (12,)
    assert list(m.params)[-1] == "weight_p_l1_reverse" and "peepholes=True" in repr(m)
    rnnfast.init.init_module(m, bias="zeros")  # peepholes are vectors: initialised as biases
    assert np.all(m.params["weight_p_l0"] == 0)
    with pytest.raises(TypeError, match="peepholes"):
        rnnfast.LSTM(3, 4, peepholes="yes")
    with pytest.raises(TypeError):
        rnnfast.GRU(3, 4, peepholes=True)
    with pytest.raises(ValueError, match="peepholes"):
        rnnfast._core.Stack("gru", 3, 4, 1, False, True, "float32", 0, True)
