"""The oracle's own check: reference BPTT gradients against central finite differences (float64)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, make, numeric_grad, state_arrays

from rnnfast import reference


def _loss_fn(module: Any, x: np.ndarray, state: Any, lengths: Any, wy: np.ndarray, ws: list):
    """A loss touching every output: sum(y * wy) + sum over final states of sum(s * ws)."""

    def loss(x_: np.ndarray, state_: Any) -> float:
        y, s_n, _ = module.forward(x_, state_, lengths, training=False)
        return float(np.sum(y * wy) + sum(np.sum(s * w) for s, w in zip(state_arrays(s_n), ws)))

    return loss


CONFIGS = {
    "plain": dict(num_layers=1, bidirectional=False, batch_first=False, bias=True, lengths=None),
    "no_bias": dict(num_layers=1, bidirectional=False, batch_first=False, bias=False, lengths=None),
    "deep_bi_lengths": dict(
        num_layers=2, bidirectional=True, batch_first=True, bias=True, lengths=[3, 1]
    ),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_reference_gradients_match_finite_differences(cls: str, kw: dict, config: str) -> None:
    cfg = dict(CONFIGS[config])
    lengths = cfg.pop("lengths")
    rng = np.random.default_rng(7)
    steps, batch, isz, hsz = 3, 2, 3, 2
    m = make(reference, cls, kw, input_size=isz, hidden_size=hsz, dtype=np.float64, seed=3, **cfg)
    with m.params.writable() as params:  # larger weights exercise the saturations
        for p in params.values():
            p *= 2.0
    x = rng.standard_normal((batch, steps, isz) if cfg["batch_first"] else (steps, batch, isz))
    nstate = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    h0 = rng.standard_normal((nstate, batch, hsz))
    state = (h0, rng.standard_normal(h0.shape)) if cls == "LSTM" else h0

    y, s_n, tape = m.forward(x, state, lengths)
    wy = rng.standard_normal(y.shape)
    if lengths is not None:  # y is a constant 0 past each length: dy there must be ignored
        assert np.all(y[1, 1:] == 0)
    ws = [rng.standard_normal(s.shape) for s in state_arrays(s_n)]
    ds = tuple(ws) if cls == "LSTM" else ws[0]
    m.zero_grad()
    dx, dstate0 = m.backward(tape, wy, ds)

    loss = _loss_fn(m, x, state, lengths, wy, ws)
    checks = [("x", dx, x)]
    checks += [
        (f"state[{i}]", d, s)
        for i, (d, s) in enumerate(zip(state_arrays(dstate0), state_arrays(state)))
    ]
    for what, analytic, arr in checks:
        numeric = numeric_grad(lambda: loss(x, state), arr)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=what)
    with m.params.writable() as params:  # perturbed in place, element by element
        for name, p in params.items():
            numeric = numeric_grad(lambda: loss(x, state), p)
            np.testing.assert_allclose(m.grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
