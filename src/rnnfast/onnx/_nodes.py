"""Running ONNX nodes: the recurrent operators on rnnfast, and the few shape operators exporters
put between them, in NumPy."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._weights import UnsupportedError, cell_of, state_dict


def _flip(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sequence's first lengths[b] steps in reverse order (the rest where it was)."""
    steps = x.shape[0]
    t = np.arange(steps)[:, None]
    idx = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return np.take_along_axis(x, idx[(...,) + (None,) * (x.ndim - 2)], axis=0)


def build_module(
    op: str, attrs: dict[str, Any], w: np.ndarray, r: np.ndarray, b: Any, p: Any = None
) -> Any:
    """The rnnfast module of an ONNX RNN/GRU/LSTM node with weights W, R, B (and LSTM's P)."""
    import rnnfast

    if w.dtype not in (np.float32, np.float64):
        raise UnsupportedError(f"{op} W: rnnfast runs float32 and float64, got {w.dtype}")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise UnsupportedError(f"{op} attribute 'direction' {direction!r}: unknown")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(attrs.get("hidden_size", r.shape[-1]))
    cls, kw = cell_of(op, attrs, dirs)
    if p is not None:
        kw["peepholes"] = True
    module = getattr(rnnfast, cls)(
        w.shape[-1], hidden, bidirectional=dirs == 2, dtype=w.dtype, **kw
    )
    module.load_state_dict(state_dict(op, w, r, b, hidden, p))
    module.onnx_direction = direction
    return module


def run_recurrent(op: str, attrs: dict[str, Any], inputs: list[Any], module: Any = None) -> list:
    """Y, Y_h (and Y_c) of an ONNX RNN, GRU or LSTM node."""
    inputs = list(inputs) + [None] * (8 - len(inputs))
    x, w, r, b, seq, h0, c0, p = inputs
    if module is None:
        module = build_module(op, attrs, w, r, b, p)
    if x.dtype != module.dtype:
        raise UnsupportedError(f"{op} X: expected {module.dtype} as W, got {x.dtype}")
    layout = int(attrs.get("layout", 0))
    if layout:  # batch-major: X [B, T, I], states [B, D, H]
        x = x.transpose(1, 0, 2)
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    steps, batch = x.shape[:2]
    dirs, hidden = module.num_directions, module.hidden_size
    lengths = np.full(batch, steps, np.int64) if seq is None else np.asarray(seq, np.int64)
    if np.any((lengths < 0) | (lengths > steps)):
        raise ValueError(f"{op} sequence_lens: expected values in [0, {steps}], got {lengths}")
    lstm = op == "LSTM"
    zeros = np.zeros((dirs, batch, hidden), x.dtype)
    h0 = zeros if h0 is None else np.ascontiguousarray(h0, x.dtype)
    c0 = zeros if c0 is None else np.ascontiguousarray(c0, x.dtype)
    y = np.zeros((steps, batch, dirs * hidden), x.dtype)
    h_n, c_n = h0.copy(), c0.copy()
    run = lengths > 0  # an empty sequence keeps its initial state and outputs zeros
    if run.any() and steps:
        xs, lens = np.ascontiguousarray(x[:, run]), lengths[run]
        reverse = module.onnx_direction == "reverse"
        if reverse:  # rnnfast's forward direction over each sequence reversed
            xs = _flip(xs, lens)
        state = (h0[:, run], c0[:, run]) if lstm else h0[:, run]
        ys, s_n = module(xs, state, None if seq is None else lens)
        if reverse:
            ys = _flip(ys, lens)
        y[:, run] = ys
        if lstm:
            h_n[:, run], c_n[:, run] = s_n
        else:
            h_n[:, run] = s_n
    y4 = y.reshape(steps, batch, dirs, hidden).transpose(0, 2, 1, 3)  # [T, D, B, H]
    if layout:
        y4, h_n, c_n = y4.transpose(2, 0, 1, 3), h_n.transpose(1, 0, 2), c_n.transpose(1, 0, 2)
    outs = [np.ascontiguousarray(y4), np.ascontiguousarray(h_n)]
    return [*outs, np.ascontiguousarray(c_n)] if lstm else outs


def _axes(attrs: dict[str, Any], inputs: list[Any], at: int) -> Any:
    if len(inputs) > at and inputs[at] is not None:
        return tuple(int(a) for a in inputs[at])
    return tuple(attrs["axes"]) if "axes" in attrs else None


def _reshape(attrs: dict[str, Any], x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    shape = [int(s) for s in shape]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(x: np.ndarray, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _squeeze(attrs: dict[str, Any], inputs: list[Any]) -> np.ndarray:
    axes = _axes(attrs, inputs, 1)
    return np.squeeze(inputs[0], axis=axes)


def _unsqueeze(attrs: dict[str, Any], inputs: list[Any]) -> np.ndarray:
    out = inputs[0]
    for a in sorted(a % (out.ndim + len(_axes(attrs, inputs, 1))) for a in _axes(attrs, inputs, 1)):
        out = np.expand_dims(out, a)
    return out


# The shape operators exporters put between recurrent nodes: attrs, inputs -> outputs.
SHAPE_OPS: dict[str, Callable[[dict[str, Any], list[Any]], list[Any]]] = {
    "Identity": lambda a, i: [i[0]],
    "Transpose": lambda a, i: [np.transpose(i[0], a.get("perm"))],
    "Reshape": lambda a, i: [_reshape(a, i[0], i[1])],
    "Squeeze": lambda a, i: [_squeeze(a, i)],
    "Unsqueeze": lambda a, i: [_unsqueeze(a, i)],
    "Concat": lambda a, i: [np.concatenate([x for x in i if x is not None], axis=a["axis"])],
    "Shape": lambda a, i: [np.array(i[0].shape, np.int64)],
    "Gather": lambda a, i: [np.take(i[0], i[1], axis=a.get("axis", 0))],
    "Slice": lambda a, i: [_slice(i[0], *i[1:])],
    "Cast": lambda a, i: [i[0].astype(_onnx_dtype(a["to"]))],
}


def _onnx_dtype(code: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(code)
