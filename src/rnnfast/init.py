"""Initialisers for recurrent and linear layers, seeded, applied per gate block.

A recurrent weight stacks G gate blocks of H rows (`weight_ih` (G*H, I), `weight_hh` (G*H, H));
each block is initialised on its own, so "orthogonal" makes every gate's H x H recurrent matrix
orthogonal and "identity" every one an identity (IRNN, Le et al. 2015: ReLU RNN, W_hh = I,
biases 0). Schemes:

- "orthogonal": Q of the QR of a Gaussian matrix, signs fixed by diag(R) so that Q is uniformly
  distributed (Saxe et al. 2014), times `gain`;
- "identity": `gain` * I (square blocks only);
- "xavier_uniform" / "xavier_normal": Glorot and Bengio 2010, with fan_in and fan_out of a block;
- "pytorch": uniform in [-1/sqrt(H), 1/sqrt(H)] (PyTorch's default for recurrent layers);
- "small_normal": N(0, 0.001^2), the input weights of the IRNN (Le et al. 2015);
- "zeros" (biases).
"""

from __future__ import annotations

import numpy as np

from ._module import Module
from ._recurrent import RecurrentBase

WEIGHT_SCHEMES = (
    "orthogonal",
    "identity",
    "xavier_uniform",
    "xavier_normal",
    "pytorch",
    "small_normal",
)
BIAS_SCHEMES = ("zeros", "pytorch")


def orthogonal(rows: int, cols: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns (whichever are fewer), times gain."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # sign correction: uniform over the orthogonal group
    return gain * (q if rows >= cols else q.T)


def _block(
    scheme: str, rows: int, cols: int, rng: np.random.Generator, gain: float, hidden: int
) -> np.ndarray:
    if scheme == "orthogonal":
        return orthogonal(rows, cols, rng, gain)
    if scheme == "identity":
        if rows != cols:
            raise ValueError(f"identity: needs square gate blocks, got {rows} x {cols}")
        return gain * np.eye(rows)
    if scheme == "xavier_uniform":
        bound = gain * np.sqrt(6.0 / (rows + cols))
        return rng.uniform(-bound, bound, size=(rows, cols))
    if scheme == "xavier_normal":
        return rng.normal(0.0, gain * np.sqrt(2.0 / (rows + cols)), size=(rows, cols))
    if scheme == "small_normal":
        return rng.normal(0.0, 0.001 * gain, size=(rows, cols))
    if scheme == "pytorch":
        bound = 1.0 / np.sqrt(hidden)
        return rng.uniform(-bound, bound, size=(rows, cols))
    raise ValueError(f"scheme: expected one of {WEIGHT_SCHEMES}, got {scheme!r}")


def init_weight(
    w: np.ndarray,
    scheme: str,
    *,
    blocks: int = 1,
    gain: float = 1.0,
    seed: int | np.random.Generator | None = None,
    hidden: int | None = None,
) -> None:
    """Fills w (rows, cols) in place, block by block (`blocks` stacked row blocks)."""
    rng = np.random.default_rng(seed)
    rows, cols = w.shape
    if rows % blocks:
        raise ValueError(f"blocks: {blocks} does not divide the {rows} rows of the weight")
    h = rows // blocks
    for k in range(blocks):
        w[k * h : (k + 1) * h] = _block(scheme, h, cols, rng, gain, hidden or h)


def init_module(
    module: Module,
    *,
    weight_ih: str = "xavier_uniform",
    weight_hh: str = "orthogonal",
    bias: str = "zeros",
    gain: float = 1.0,
    seed: int | None = None,
) -> None:
    """Re-initialises a recurrent layer (or a Linear: its weight gets `weight_ih`) in place."""
    for name, scheme in (("weight_ih", weight_ih), ("weight_hh", weight_hh)):
        if scheme not in WEIGHT_SCHEMES:
            raise ValueError(f"{name}: expected one of {WEIGHT_SCHEMES}, got {scheme!r}")
    if bias not in BIAS_SCHEMES:
        raise ValueError(f"bias: expected one of {BIAS_SCHEMES}, got {bias!r}")
    rng = np.random.default_rng(seed)
    gates = module._gates if isinstance(module, RecurrentBase) else 1
    hidden = module.hidden_size if isinstance(module, RecurrentBase) else None
    with module.params.writable() as params:
        for name, p in params.items():
            if name.startswith(("bias", "weight_p_")):  # vectors: biases and peepholes
                if bias == "zeros":
                    p.fill(0)
                else:
                    bound = 1.0 / np.sqrt(hidden or p.shape[0])
                    p[...] = rng.uniform(-bound, bound, size=p.shape)
                continue
            scheme = weight_hh if name.startswith("weight_hh") else weight_ih
            blocks = 1 if name.startswith("weight_hr") else gates  # a projection has no gates
            init_weight(p, scheme, blocks=blocks, gain=gain, seed=rng, hidden=hidden)


__all__ = ["init_module", "init_weight", "orthogonal"]
