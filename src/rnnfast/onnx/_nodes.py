"""Running ONNX nodes: the recurrent operators on rnnfast, and the few shape operators exporters
put between them, in NumPy."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._weights import GATES, UnsupportedError, cell_of, state_dict


def _flip(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each sequence's first lengths[b] steps in reverse order (the rest where it was)."""
    steps = x.shape[0]
    t = np.arange(steps)[:, None]
    idx = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return np.take_along_axis(x, idx[(...,) + (None,) * (x.ndim - 2)], axis=0)


def _array(value: Any, what: str, ndim: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"{what}: missing")
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what}: expected an array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim} dimensions, got shape {value.shape}")
    return value


def check_node(
    op: str,
    attrs: dict[str, Any],
    w: Any,
    r: Any,
    b: Any = None,
    p: Any = None,
    where: str = "",
) -> tuple[str, int, int]:
    """(direction, directions, hidden) of a recurrent node after checking its attributes and
    weights against each other, before anything is allocated (a small file must not cost more
    than its size to refuse). Errors name the node and the input or attribute."""
    at = where or op
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise UnsupportedError(f"{at} attribute 'direction': unknown value {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{at} attribute 'layout': expected 0 or 1, got {layout!r}")
    w = _array(w, f"{at} input W", 3)
    r = _array(r, f"{at} input R", 3)
    if w.dtype not in (np.float32, np.float64):
        raise UnsupportedError(f"{at} input W: rnnfast runs float32 and float64, got {w.dtype}")
    gates = GATES[op]
    hidden = r.shape[-1]
    if "hidden_size" in attrs and attrs["hidden_size"] != hidden:
        raise ValueError(
            f"{at} attribute 'hidden_size' {attrs['hidden_size']}: R {r.shape} is for "
            f"hidden_size {hidden}"
        )
    if hidden < 1 or w.shape[-1] < 1:
        raise ValueError(f"{at}: hidden and input sizes must be >= 1 (W {w.shape}, R {r.shape})")
    expect: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {
        "W": (w, (dirs, gates * hidden, w.shape[-1])),
        "R": (r, (dirs, gates * hidden, hidden)),
    }
    if b is not None:
        expect["B"] = (_array(b, f"{at} input B", 2), (dirs, 2 * gates * hidden))
    if p is not None:
        if op != "LSTM":
            raise ValueError(f"{at} input P: only LSTM has peepholes")
        expect["P"] = (_array(p, f"{at} input P", 2), (dirs, 3 * hidden))
    for name, (arr, shape) in expect.items():
        if arr.shape != shape:
            raise ValueError(
                f"{at} input {name}: expected shape {shape} ({dirs} direction(s), "
                f"hidden_size {hidden}), got {arr.shape}"
            )
        if arr.dtype != w.dtype:
            raise TypeError(f"{at} input {name}: expected {w.dtype} as W, got {arr.dtype}")
    return direction, dirs, hidden


def build_module(
    op: str,
    attrs: dict[str, Any],
    w: Any,
    r: Any,
    b: Any,
    p: Any = None,
    where: str = "",
) -> Any:
    """The rnnfast module of an ONNX RNN/GRU/LSTM node with weights W, R, B (and LSTM's P)."""
    import rnnfast

    direction, dirs, hidden = check_node(op, attrs, w, r, b, p, where)
    cls, kw = cell_of(op, attrs, dirs)
    if p is not None:
        kw["peepholes"] = True
    module = getattr(rnnfast, cls)(
        w.shape[-1], hidden, bidirectional=dirs == 2, dtype=w.dtype, **kw
    )
    module.load_state_dict(state_dict(op, w, r, b, hidden, p))
    module.onnx_direction = direction
    return module


def _state(value: Any, what: str, shape: tuple[int, ...], dtype: Any) -> Any:
    if value is None:
        return None
    arr = _array(value, what, 3)
    if arr.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype)


def _lengths(seq: Any, what: str, batch: int, steps: int) -> np.ndarray:
    arr = np.asarray(seq)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integers, got {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{what}: expected shape ({batch},) (the batch), got {arr.shape}")
    lengths = arr.astype(np.int64)
    if np.any((lengths < 0) | (lengths > steps)):
        raise ValueError(f"{what}: expected values in [0, {steps}], got {lengths}")
    return lengths


def _run_module(module: Any, x: np.ndarray, state: Any, lens: Any) -> tuple[Any, Any, Any]:
    """y, h_n and c_n (None but for LSTM) of the module over x, whose sequences all run;
    ONNX's reverse direction is rnnfast's forward one over each sequence reversed."""
    reverse = module.onnx_direction == "reverse"
    if reverse:
        steps, batch = x.shape[:2]
        full = np.full(batch, steps, np.int64) if lens is None else lens
        x = _flip(x, full)
    y, s_n = module(x, state, lens)
    if reverse:
        y = _flip(y, full)
    h_n, c_n = s_n if isinstance(s_n, tuple) else (s_n, None)
    return y, h_n, c_n


def run_recurrent(
    op: str, attrs: dict[str, Any], inputs: list[Any], module: Any = None, where: str = ""
) -> list:
    """Y, Y_h (and Y_c) of an ONNX RNN, GRU or LSTM node."""
    at = where or op
    inputs = list(inputs) + [None] * (8 - len(inputs))
    x, w, r, b, seq, h0, c0, p = inputs
    if module is None:
        module = build_module(op, attrs, w, r, b, p, where)
    x = _array(x, f"{at} input X", 3)
    if x.dtype != module.dtype:
        raise TypeError(f"{at} input X: expected {module.dtype} as W, got {x.dtype}")
    layout = int(attrs.get("layout", 0))
    if layout:  # batch-major: X [B, T, I], states [B, D, H]
        x = x.transpose(1, 0, 2)
    steps, batch = x.shape[:2]
    dirs, hidden = module.num_directions, module.hidden_size
    if x.shape[2] != module.input_size:
        raise ValueError(
            f"{at} input X: expected input size {module.input_size} (W's), got {x.shape[2]}"
        )
    state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    h0 = _state(h0, f"{at} input initial_h", state_shape, x.dtype)
    c0 = _state(c0, f"{at} input initial_c", state_shape, x.dtype)
    if layout:
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    lengths = (
        np.full(batch, steps, np.int64)
        if seq is None
        else _lengths(seq, f"{at} input sequence_lens", batch, steps)
    )
    lstm = op == "LSTM"
    run = lengths > 0
    if steps and run.all():  # every sequence runs: no gathering, no copies of X or Y
        state: Any = h0
        if lstm:
            zeros = np.zeros((dirs, batch, hidden), x.dtype)
            given = h0 is not None or c0 is not None
            state = (zeros if h0 is None else h0, zeros if c0 is None else c0) if given else None
        y, h_n, c_n = _run_module(module, x, state, None if seq is None else lengths)
    else:
        # onnxruntime's answer for a sequence of length 0 (or T = 0): zeros in Y, Y_h and Y_c.
        zeros = np.zeros((dirs, batch, hidden), x.dtype)
        h0 = zeros if h0 is None else np.ascontiguousarray(h0)
        c0 = zeros if c0 is None else np.ascontiguousarray(c0)
        y = np.zeros((steps, batch, dirs * hidden), x.dtype)
        h_n, c_n = zeros.copy(), zeros.copy()
        if run.any() and steps:
            state = (h0[:, run], c0[:, run]) if lstm else h0[:, run]
            ys, hs, cs = _run_module(
                module, x[:, run], state, None if seq is None else lengths[run]
            )
            y[:, run], h_n[:, run] = ys, hs
            if lstm:
                c_n[:, run] = cs
    y4 = y.reshape(steps, batch, dirs, hidden).transpose(0, 2, 1, 3)  # [T, D, B, H]
    if layout:
        y4, h_n = y4.transpose(2, 0, 1, 3), h_n.transpose(1, 0, 2)
        c_n = c_n.transpose(1, 0, 2) if lstm else None
    outs = [np.ascontiguousarray(y4), np.ascontiguousarray(h_n)]
    return [*outs, np.ascontiguousarray(c_n)] if lstm else outs


def _axes(attrs: dict[str, Any], inputs: list[Any], at: int) -> Any:
    if len(inputs) > at and inputs[at] is not None:
        return tuple(int(a) for a in inputs[at])
    return tuple(attrs["axes"]) if "axes" in attrs else None


def _reshape(attrs: dict[str, Any], x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    dims = [int(s) for s in shape]
    if not attrs.get("allowzero", 0):
        dims = [x.shape[i] if s == 0 else s for i, s in enumerate(dims)]
    return x.reshape(dims)


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
    "Concat": lambda a, i: [np.concatenate([x for x in i if x is not None], axis=_attr(a, "axis"))],
    "Shape": lambda a, i: [np.array(i[0].shape, np.int64)],
    "Gather": lambda a, i: [np.take(i[0], i[1], axis=a.get("axis", 0))],
    "Slice": lambda a, i: [_slice(i[0], *i[1:])],
    "Cast": lambda a, i: [i[0].astype(_onnx_dtype(_attr(a, "to")))],
}


def _attr(attrs: dict[str, Any], name: str) -> Any:
    if name not in attrs:
        raise ValueError(f"attribute {name!r}: required, missing")
    return attrs[name]


def _onnx_dtype(code: int) -> Any:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(code)
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"attribute 'to': {code!r} is not an ONNX tensor type") from None


def run_shape_op(op: str, attrs: dict[str, Any], inputs: list[Any], where: str) -> list[Any]:
    """A shape operator's outputs; any failure a ValueError naming the node."""
    try:
        return SHAPE_OPS[op](attrs, inputs)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise ValueError(f"{where}: {e}") from e
