r"""Output layers and losses for training recurrent networks, each with forward and backward.

- `Linear`: y = x W^T + b over the last axis, so a whole (T, B, H) sequence is one product. Its
  products run on rnnfast's GEMM, not NumPy's BLAS: a training loop then wakes a single thread
  pool (another library's pool spins for a while after each call and competes for the cores).
- `CrossEntropyLoss`: softmax cross-entropy fused with log-softmax. For logits z and target c,
  loss = logsumexp(z) - z_c, computed after subtracting max(z) so nothing overflows, and
  dloss/dz = softmax(z) - onehot(c). Targets equal to `ignore_index`, or where `mask` is False
  (padded steps), count for nothing.
- `MSELoss`: mean of (prediction - target)^2 over the unmasked elements.
- `BCEWithLogitsLoss`: binary cross-entropy of sigmoid(z) against 0/1 targets, one per output
  (multi-label), computed as max(z, 0) - z*t + log(1 + exp(-|z|)) so nothing overflows;
  d/dz = sigmoid(z) - t.

Losses reduce by the mean over counted elements ("mean") or their sum ("sum"); a batch with no
counted element has loss 0 and zero gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from . import _validate as v
from ._module import Module, Tape


class Linear(Module):
    """y = x W^T + b over the last axis of x; PyTorch's names (`weight`, `bias`) and init."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype: Any = np.float32,
        seed: int | None = None,
    ) -> None:
        self.in_features = v.check_size(in_features, "in_features")
        self.out_features = v.check_size(out_features, "out_features")
        self.bias = v.check_bool(bias, "bias")
        self.dtype = v.check_dtype(dtype)
        self.reset_parameters(seed)

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def reset_parameters(self, seed: int | None = None) -> None:
        """PyTorch's default: weight and bias uniform in [-1/sqrt(in), 1/sqrt(in)], seeded."""
        self._init_uniform(1.0 / np.sqrt(self.in_features), seed)

    def _input(self, x: Any) -> np.ndarray:
        arr = v.as_float_array(x, "x", self.dtype)
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected last dimension {self.in_features} (in_features), "
                f"got shape {arr.shape}"
            )
        return arr

    def forward(self, x: Any, training: bool = True) -> tuple[np.ndarray, Tape | None]:
        """y of shape (..., out_features), and a tape for backward when `training`."""
        arr = self._input(x)
        x2 = np.ascontiguousarray(arr.reshape(-1, self.in_features))
        y = _core.matmul(x2, self.params["weight"], transpose_b=True)
        if self.bias:
            y += self.params["bias"]
        tape = Tape(self, x2.copy(), {"shape": arr.shape}) if training else None
        return y.reshape(*arr.shape[:-1], self.out_features), tape

    def __call__(self, x: Any) -> np.ndarray:
        return self.forward(x, training=False)[0]

    def backward(self, tape: Tape, dy: Any) -> np.ndarray:
        """dL/dx; adds dL/dW and dL/db to `grads`."""
        x2 = self._take_tape(tape)
        shape = tape._meta["shape"]
        d = v.as_float_array(dy, "dy", self.dtype)
        v.check_shape(d, "dy", (*shape[:-1], self.out_features), "(the shape of y)")
        tape._consumed = True
        d2 = np.ascontiguousarray(d.reshape(-1, self.out_features))
        with self._grad_lock:  # concurrent backward calls add to the same grads
            _core.matmul(d2, x2, transpose_a=True, out=self.grads["weight"])  # += d2^T x2
            if self.bias:
                self.grads["bias"] += d2.sum(axis=0)
        return _core.matmul(d2, self.params["weight"]).reshape(shape)


# A diverging run's losses and gradients overflow to inf and NaN: they propagate (as in the
# engines and in PyTorch), silently; NumPy's warnings would turn into errors or tracebacks.
_quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    return reduction


def _mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask: expected a boolean array, got dtype {m.dtype}")
    v.check_shape(m, "mask", shape)
    return m


class CrossEntropyLoss:
    """Softmax cross-entropy over the last axis of the logits, fused with log-softmax."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        self.ignore_index = int(ignore_index)
        self.reduction = _reduction(reduction)

    @_quiet
    def forward(self, logits: Any, targets: Any, mask: Any = None) -> tuple[float, dict]:
        """The loss and what backward needs. logits (..., C) float, targets (...) integers in
        [0, C) or ignore_index, mask (...) booleans (False: not counted)."""
        z = np.asarray(logits)
        if z.dtype.kind != "f":
            raise TypeError(f"logits: expected a floating array, got dtype {z.dtype}")
        if z.ndim < 1 or z.shape[-1] < 1:
            raise ValueError(f"logits: expected shape (..., C) with C >= 1, got {z.shape}")
        t = np.asarray(targets)
        if t.dtype.kind not in "iu":
            raise TypeError(f"targets: expected integers, got dtype {t.dtype}")
        v.check_shape(t, "targets", z.shape[:-1])
        classes = z.shape[-1]
        counted = _mask(mask, t.shape) & (t != self.ignore_index)
        bad = counted & ((t < 0) | (t >= classes))
        if bad.any():
            raise ValueError(
                f"targets: expected values in [0, {classes}) or ignore_index {self.ignore_index}, "
                f"got {t[bad].flat[0]}"
            )
        count = int(counted.sum())
        scale = 1.0 / count if (self.reduction == "mean" and count) else 1.0
        # One fused pass in the core: the loss and its gradient (softmax - onehot) * scale.
        z2 = z.reshape(-1, classes)
        if z2.dtype not in v.FLOAT_DTYPES:
            z2 = z2.astype(np.float64)
        total, grad = _core.softmax_cross_entropy(
            np.ascontiguousarray(z2),
            np.where(counted, t, 0).astype(np.int64).reshape(-1),
            np.ascontiguousarray(counted).reshape(-1),
            scale,
        )
        cache = {"grad": grad.reshape(z.shape).astype(z.dtype, copy=False)}
        return total * scale, cache

    @_quiet
    def backward(self, cache: dict, dloss: float = 1.0) -> np.ndarray:
        """dL/dlogits: (softmax - onehot) for counted elements, scaled by the reduction."""
        grad = cache["grad"]
        return grad * grad.dtype.type(dloss)


class MSELoss:
    """Mean squared error over the unmasked elements."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _reduction(reduction)

    @_quiet
    def forward(self, prediction: Any, target: Any, mask: Any = None) -> tuple[float, dict]:
        p = np.asarray(prediction)
        if p.dtype.kind != "f":
            raise TypeError(f"prediction: expected a floating array, got dtype {p.dtype}")
        t = np.asarray(target)
        v.check_shape(t, "target", p.shape)
        counted = _mask(mask, p.shape)
        diff = (p - t) * counted
        count = int(counted.sum())
        scale = 1.0 / count if (self.reduction == "mean" and count) else 1.0
        return float((diff * diff).sum() * scale), {"diff": diff, "scale": scale}

    @_quiet
    def backward(self, cache: dict, dloss: float = 1.0) -> np.ndarray:
        """dL/dprediction = 2 (prediction - target) over counted elements, scaled."""
        return (2.0 * cache["scale"] * dloss) * cache["diff"]


class BCEWithLogitsLoss:
    """Binary cross-entropy on logits, elementwise (multi-label targets in {0, 1})."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _reduction(reduction)

    @_quiet
    def forward(self, logits: Any, targets: Any, mask: Any = None) -> tuple[float, dict]:
        z = np.asarray(logits)
        if z.dtype.kind != "f":
            raise TypeError(f"logits: expected a floating array, got dtype {z.dtype}")
        t = np.asarray(targets, dtype=z.dtype)
        v.check_shape(t, "targets", z.shape)
        counted = _mask(mask, z.shape)
        losses = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        count = int(counted.sum())
        scale = 1.0 / count if (self.reduction == "mean" and count) else 1.0
        cache = {"z": z, "t": t, "counted": counted, "scale": scale}
        return float((losses * counted).sum() * scale), cache

    @_quiet
    def backward(self, cache: dict, dloss: float = 1.0) -> np.ndarray:
        z = cache["z"]
        e = np.exp(-np.abs(z))
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        return (sig - cache["t"]) * cache["counted"] * (cache["scale"] * dloss)


__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "Linear", "MSELoss"]
