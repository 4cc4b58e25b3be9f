"""Gradient flow through time: how dE_T/dh_k shrinks or grows with the distance T - k.

For h_t = f(W h_{t-1} + U x_t + b) the gradient reaching h_k from a loss E_T at the last step is
a product of per-step Jacobians J_t = diag(f'(a_t)) W (for the plain RNN), so its norm behaves
like ||J||^(T-k): it vanishes when the Jacobians' norms stay below 1 and explodes above
(Bengio et al. 1994; Pascanu et al. 2013). Gates (LSTM, GRU), identity or orthogonal
initialisation (IRNN, Le et al. 2015) and ReLU are the remedies; `gradient_flow` measures it on a
module and `rnnfast gradflow` draws the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _validate as v
from ._recurrent import RecurrentBase


@dataclass
class LayerSpectrum:
    """What bounds the gradient's growth in one layer: W_hh's spectral radius and largest
    singular value (each gate's block for LSTM/GRU), and for a plain RNN the mean spectral norm
    of the per-step Jacobian diag(f'(a_t)) W_hh over a sample of steps and sequences."""

    name: str
    spectral_radius: list[float]
    top_singular_value: list[float]
    jacobian_norm: float | None = None


@dataclass
class GradientFlow:
    """`norms[l, d]`: the mean over sequences of ||dE_T/dh_k|| of layer l at distance d = T-1-k
    from the last step (layers of a unidirectional stack, top layer last); `gain[l]`: the
    geometric-mean ratio of that norm from one step to the one before it (< 1: vanishing)."""

    distance: np.ndarray
    norms: np.ndarray
    gain: np.ndarray
    layers: list[LayerSpectrum] = field(default_factory=list)


def _blocks(module: RecurrentBase, w_hh: np.ndarray) -> list[np.ndarray]:
    h = module.hidden_size
    return [w_hh[g * h : (g + 1) * h] for g in range(module._gates)]


def _jacobian_norm(
    module: RecurrentBase, w_hh: np.ndarray, states: np.ndarray, samples: int, rng: Any
) -> float | None:
    """Mean spectral norm of diag(f'(a_t)) W_hh for a plain RNN, over sampled (t, b)."""
    if module.cell not in ("rnn_tanh", "rnn_relu"):
        return None
    steps, batch = states.shape[:2]
    if steps * batch == 0:
        return None
    picks = rng.choice(steps * batch, size=min(samples, steps * batch), replace=False)
    norms = []
    for p in picks:
        h = states[p // batch, p % batch].astype(np.float64)
        slope = 1 - h**2 if module.cell == "rnn_tanh" else (h > 0).astype(np.float64)
        norms.append(np.linalg.norm(slope[:, None] * w_hh.astype(np.float64), 2))
    return float(np.mean(norms))


def gradient_flow(
    module: RecurrentBase,
    x: Any,
    dy_last: Any = None,
    *,
    samples: int = 64,
    seed: int = 0,
) -> GradientFlow:
    """Runs x (T, B, I) through `module` and back from a loss at the last step only, and
    measures ||dE_T/dh_k|| at every distance T-1-k, layer by layer.

    `dy_last` (B, H) is dE_T/dy_{T-1}, the gradient the loss sends to the last output (a task's
    head gives it); by default a random unit vector per sequence. The module's `grads` are left
    as they were. Unidirectional modules only (a reverse direction's last step is the first)."""
    if not isinstance(module, RecurrentBase):
        raise TypeError(
            f"module: expected an rnnfast recurrent module, got {type(module).__name__}"
        )
    if module.bidirectional:
        raise ValueError("module: gradient_flow needs a unidirectional module")
    samples = v.check_size(samples, "samples")
    rng = np.random.default_rng(v.check_seed(seed))
    y, _, tape = module.forward(x)
    assert tape is not None  # a training forward
    if module.batch_first:
        y = y.transpose(1, 0, 2)
    steps, batch, width = y.shape
    if steps == 0 or batch == 0:
        raise ValueError(f"x: expected at least one step and one sequence, got T={steps} B={batch}")
    if dy_last is None:
        d = rng.standard_normal((batch, width))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
    else:
        d = v.as_float_array(dy_last, "dy_last", module.dtype, convert_floats=True)
        v.check_shape(d, "dy_last", (batch, width), "(B, H)")
    dy = np.zeros((steps, batch, width), module.dtype)
    dy[-1] = d
    if module.batch_first:
        dy = dy.transpose(1, 0, 2)
    kept = {k: g.copy() for k, g in module.grads.items()}
    try:
        _, _, grads = module.backward(tape, dy, input_grad=False, return_state_grads=True)
    finally:
        for k, g in kept.items():
            module.grads[k][...] = g
    dhs = grads[0] if isinstance(grads, tuple) else grads
    if module.batch_first:
        dhs = dhs.transpose(0, 2, 1, 3)
    # (layers, T, B, S) -> mean over B of the norm, then reversed in time: index = distance.
    norms = np.linalg.norm(dhs.astype(np.float64), axis=3).mean(axis=2)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = norms[:, 1:] / norms[:, :-1]
        logs = np.where(ratios > 0, np.log(np.where(ratios > 0, ratios, 1)), np.nan)
        gain = np.exp(np.nanmean(logs, axis=1)) if steps > 1 else np.full(len(norms), np.nan)
    layers = []
    states = None
    if module.cell in ("rnn_tanh", "rnn_relu"):  # each layer's states, for its Jacobians
        states = _layer_states(module, x)
    for layer in range(module.num_layers):
        w_hh = np.asarray(module.params[f"weight_hh_l{layer}"], np.float64)
        blocks = _blocks(module, w_hh)
        square = [b for b in blocks if b.shape[0] == b.shape[1]]
        layers.append(
            LayerSpectrum(
                name=f"weight_hh_l{layer}",
                spectral_radius=[float(np.abs(np.linalg.eigvals(b)).max()) for b in square],
                top_singular_value=[float(np.linalg.norm(b, 2)) for b in blocks],
                jacobian_norm=None
                if states is None
                else _jacobian_norm(module, w_hh, states[layer], samples, rng),
            )
        )
    return GradientFlow(np.arange(steps), norms, np.asarray(gain), layers)


def _layer_states(module: RecurrentBase, x: Any) -> list[np.ndarray]:
    """Every layer's output (T, B, H), running the layers one at a time on a copy."""
    from . import _fast

    out, layer_in = [], x if not module.batch_first else np.asarray(x).transpose(1, 0, 2)
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else module.hidden_size
        one = _fast.RNN(
            width,
            module.hidden_size,
            nonlinearity=getattr(module, "nonlinearity", "tanh"),
            bias=module.bias,
            dtype=module.dtype,
        )
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if module.bias else 2]
        one.load_state_dict({f"{k}_l0": module.params[f"{k}_l{layer}"] for k in kinds})
        layer_in, _ = one(layer_in)
        out.append(layer_in)
    return out


__all__ = ["GradientFlow", "LayerSpectrum", "gradient_flow"]
