"""Gradient clipping, the classic remedy for exploding gradients.

- `clip_grad_norm(grads, max_norm)`: if the global L2 norm of all gradients exceeds max_norm,
  scale them all by max_norm / norm (Pascanu et al. 2013). Returns the norm before clipping.
- `clip_grad_value(grads, limit)`: clamp every element to [-limit, limit] (min-char-rnn clips
  to [-5, 5]).

`grads` is a module's `grads` dict, a list of such dicts, or any iterable of arrays; they are
changed in place. A non-finite norm is reported (returned, and raised as FloatingPointError when
`error_if_nonfinite`), and the gradients are then left as they are rather than scaled into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Union

import numpy as np

Grads = Union[Mapping[str, np.ndarray], Iterable[Any]]


def _arrays(grads: Grads) -> list[np.ndarray]:
    if isinstance(grads, Mapping):
        return list(grads.values())
    out: list[np.ndarray] = []
    items: Iterable[Any] = grads
    for g in items:
        out.extend(_arrays(g) if isinstance(g, Mapping) else [g])
    for g in out:
        if not isinstance(g, np.ndarray):
            raise TypeError(f"grads: expected NumPy arrays, got {type(g).__name__}")
    return out


def grad_norm(grads: Grads) -> float:
    """The global L2 norm of all gradients (summed in float64; inf or NaN, without a warning,
    when they overflow or hold NaN)."""
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for g in _arrays(grads):
            if g.size:
                # In float64 (float32 squares overflow past 1.8e19), and not through BLAS: a
                # multithreaded BLAS dot leaves its threads spinning on the cores the next
                # recurrent call needs (OpenBLAS: a char-RNN step 28 -> 84 ms).
                flat = g.ravel()
                total += float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    return math.sqrt(total)


def clip_grad_norm(grads: Grads, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    if not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")
    arrays = _arrays(grads)
    norm = grad_norm(arrays)
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(f"clip_grad_norm: the gradient norm is {norm}")
        return norm
    if norm > max_norm:
        scale = max_norm / norm
        for g in arrays:
            g *= g.dtype.type(scale)
    return norm


def clip_grad_value(grads: Grads, limit: float) -> None:
    if not limit > 0:
        raise ValueError(f"limit: expected a positive number, got {limit!r}")
    for g in _arrays(grads):
        np.clip(g, -limit, limit, out=g)


__all__ = ["clip_grad_norm", "clip_grad_value", "grad_norm"]
