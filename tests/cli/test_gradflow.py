"""rnnfast.diagnostics.gradient_flow and `rnnfast gradflow`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rnnfast
from rnnfast import diagnostics, reference
from rnnfast.cli import gradflow


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_a_linear_regime_decays_at_the_rate_of_w_hh(engine):
    """Tiny inputs keep tanh in its linear part: J_t ~ W_hh = 0.5 I, so ||dE_T/dh_k|| halves
    with every step back."""
    m = engine.RNN(3, 6, dtype=np.float64)
    with m.params.writable() as p:
        p["weight_hh_l0"][...] = 0.5 * np.eye(6)
        p["weight_ih_l0"][...] *= 1e-4
        p["bias_ih_l0"][...] = 0
        p["bias_hh_l0"][...] = 0
    x = np.random.default_rng(0).standard_normal((20, 4, 3))
    flow = diagnostics.gradient_flow(m, x)
    assert flow.norms.shape == (1, 20) and list(flow.distance) == list(range(20))
    np.testing.assert_allclose(flow.norms[0], 0.5 ** np.arange(20), rtol=1e-6)
    assert abs(flow.gain[0] - 0.5) < 1e-6
    spec = flow.layers[0]
    assert (
        abs(spec.spectral_radius[0] - 0.5) < 1e-12 and abs(spec.top_singular_value[0] - 0.5) < 1e-12
    )
    assert abs(spec.jacobian_norm - 0.5) < 1e-6


def test_norms_are_those_of_the_state_gradients_and_grads_are_kept():
    m = rnnfast.LSTM(3, 5, 2, seed=1, dtype=np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3, 3))
    d = rng.standard_normal((3, 5))
    for g in m.grads.values():
        g[...] = 1.25
    flow = diagnostics.gradient_flow(m, x, d)
    assert all(np.all(g == 1.25) for g in m.grads.values())
    _, _, tape = m.forward(x)
    dy = np.zeros((7, 3, 5))
    dy[-1] = d
    _, _, (dhs, _) = m.backward(tape, dy, return_state_grads=True)
    want = np.linalg.norm(dhs, axis=3).mean(axis=2)[:, ::-1]
    np.testing.assert_allclose(flow.norms, want, rtol=1e-12)
    assert flow.layers[0].jacobian_norm is None and len(flow.layers[0].spectral_radius) == 4


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unidirectional"):
        diagnostics.gradient_flow(rnnfast.GRU(2, 3, bidirectional=True), np.zeros((3, 1, 2)))
    with pytest.raises(TypeError, match="module"):
        diagnostics.gradient_flow("gru", np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="dy_last"):
        diagnostics.gradient_flow(
            rnnfast.GRU(2, 3), np.zeros((3, 2, 2), np.float32), np.zeros((3, 3))
        )
    with pytest.raises(ValueError, match="T=0"):
        diagnostics.gradient_flow(rnnfast.GRU(2, 3), np.zeros((0, 2, 2), np.float32))


def test_the_command_draws_every_model(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rnnfast.cli import main

    out, data = tmp_path / "flow.png", tmp_path / "flow.json"
    argv = ["gradflow", "--steps", "3", "--seq-len", "8", "--hidden", "6", "--batch", "4"]
    assert main([*argv, "--out", str(out), "--json", str(data)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(data.read_text())
    assert [r["model"] for r in rows] == [v.label for v in gradflow.MODELS]
    exploding = [r for r in rows if r["radius_scale"] > 1]
    assert [r["clip"] for r in exploding] == [0.0, 1.0]  # without and with the remedy
    for r in exploding:  # W_hh orthogonal times 1.5: spectral radius 1.5 at initialisation
        assert max(r["spectral_radius_before"]) == pytest.approx(1.5, rel=1e-5)
    assert all(len(r["norms_after"]) == 8 for r in rows)
    assert "IRNN" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path)]) == 2  # a directory: refused before training
