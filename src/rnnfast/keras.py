"""Keras 3 recurrent layers as rnnfast modules: `from_keras(layer)` for a SimpleRNN, LSTM or GRU
(or a Bidirectional wrapper of one), and `from_weights(kind, weights, ...)` from the arrays of
`layer.get_weights()` alone (keras is never imported here).

Keras stores kernel (I, G*H) and recurrent_kernel (H, G*H), columns in gate order i, f, c, o
(LSTM: PyTorch's i, f, g, o) or z, r, h (GRU: rnnfast's r, z, n); one bias (G*H), or for a GRU
with reset_after=True two, (2, 3H): input and recurrent. `reset_after=True` is rnnfast's
`linear_before_reset=True`, False the original GRU. Keras runs batch-major: the modules are made
with batch_first=True, so `module(x)` takes Keras's (B, T, I).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._cells import GATES_OF_KERAS, KERAS_TO_RNNFAST
from ._fast import GRU, LSTM, RNN
from ._recurrent import RecurrentBase

KINDS = tuple(GATES_OF_KERAS)


def _gates(kind: str, w: np.ndarray, hidden: int) -> np.ndarray:
    """Keras's columns (..., G*H) as rnnfast's rows (G*H, ...), gate blocks reordered."""
    w = np.asarray(w)
    order = KERAS_TO_RNNFAST[kind]
    if order != sorted(order):
        blocks = [w[..., g * hidden : (g + 1) * hidden] for g in range(len(order))]
        w = np.concatenate([blocks[g] for g in order], axis=-1)
    return np.ascontiguousarray(w.T)


def _direction(kind: str, weights: Sequence[Any], hidden: int, suffix: str) -> dict[str, Any]:
    kernel, recurrent = weights[0], weights[1]
    out = {
        f"weight_ih_l0{suffix}": _gates(kind, kernel, hidden),
        f"weight_hh_l0{suffix}": _gates(kind, recurrent, hidden),
    }
    gates = GATES_OF_KERAS[kind]
    if len(weights) > 2:
        bias = np.asarray(weights[2])
        if bias.ndim == 2:  # GRU reset_after: input and recurrent biases
            b_ih, b_hh = bias[0], bias[1]
        else:
            b_ih, b_hh = bias, np.zeros_like(bias)
        out[f"bias_ih_l0{suffix}"] = _gates(kind, b_ih, hidden)
        out[f"bias_hh_l0{suffix}"] = _gates(kind, b_hh, hidden)
    else:
        zeros = np.zeros(gates * hidden, np.asarray(kernel).dtype)
        out[f"bias_ih_l0{suffix}"] = zeros
        out[f"bias_hh_l0{suffix}"] = zeros
    return out


def _check_direction(
    kind: str, weights: Any, reset_after: bool, what: str, like: tuple | None = None
) -> tuple[int, int]:
    """(input, hidden) of one direction's `layer.get_weights()`, after checking every array;
    `like` (the forward direction's) is what a backward direction must match."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"{what}: expected a list of arrays, got {type(weights).__name__}")
    if len(weights) not in (2, 3):
        raise ValueError(
            f"{what}: expected [kernel, recurrent_kernel(, bias)], got {len(weights)} arrays"
        )
    arrays = []
    for name, value in zip(("kernel", "recurrent_kernel", "bias"), weights):
        if value is None:
            raise TypeError(f"{what} {name}: expected an array, got None")
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise TypeError(f"{what} {name}: expected floats, got {arr.dtype}")
        arrays.append(arr)
    kernel, recurrent = arrays[0], arrays[1]
    gates = GATES_OF_KERAS[kind]
    if recurrent.ndim != 2 or recurrent.shape[0] < 1:
        raise ValueError(f"{what} recurrent_kernel: expected (H, {gates}*H), got {recurrent.shape}")
    hidden = recurrent.shape[0]
    if recurrent.shape != (hidden, gates * hidden) or kernel.ndim != 2 or kernel.shape[0] < 1:
        raise ValueError(
            f"{what}: a {kind} of {hidden} units needs kernel (I, {gates * hidden}) and "
            f"recurrent_kernel ({hidden}, {gates * hidden}); got {kernel.shape} and "
            f"{recurrent.shape}"
        )
    if kernel.shape[1] != gates * hidden:
        raise ValueError(f"{what} kernel: expected (I, {gates * hidden}), got {kernel.shape}")
    if len(arrays) == 3:
        two = kind == "GRU" and reset_after
        want = (2, gates * hidden) if two else (gates * hidden,)
        if arrays[2].shape != want:
            raise ValueError(
                f"{what} bias: expected {want} for a {kind}"
                + (" with reset_after=True" if two else "")
                + f", got {arrays[2].shape}"
            )
    shape = (kernel.shape[0], hidden)
    if like is not None and (shape, len(weights)) != like:
        raise ValueError(
            f"{what}: expected the forward direction's sizes (input, units) {like[0]} and "
            f"{like[1]} arrays, got {shape} and {len(weights)}"
        )
    return shape


def from_weights(
    kind: str,
    weights: Sequence[Any],
    *,
    activation: str = "tanh",
    reset_after: bool = True,
    backward_weights: Sequence[Any] | None = None,
    dtype: Any = np.float32,
) -> RecurrentBase:
    """An rnnfast module from `layer.get_weights()` of a Keras `kind` ("SimpleRNN", "LSTM",
    "GRU"); `backward_weights` (the backward layer's) makes it bidirectional (Keras's
    Bidirectional with merge_mode="concat"). SimpleRNN's activation may be tanh or relu."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    reset_after = bool(reset_after)
    sizes = _check_direction(kind, weights, reset_after, "weights")
    if backward_weights is not None:
        _check_direction(
            kind, backward_weights, reset_after, "backward_weights", (sizes, len(weights))
        )
    kernel = np.asarray(weights[0])
    hidden = sizes[1]
    bidirectional = backward_weights is not None
    common = dict(batch_first=True, bidirectional=bidirectional, dtype=dtype)
    if kind == "SimpleRNN":
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation: rnnfast runs tanh or relu, got {activation!r}")
        module: RecurrentBase = RNN(kernel.shape[0], hidden, nonlinearity=activation, **common)
    elif kind == "LSTM":
        module = LSTM(kernel.shape[0], hidden, **common)
    else:
        module = GRU(kernel.shape[0], hidden, linear_before_reset=bool(reset_after), **common)
    state = _direction(kind, weights, hidden, "")
    if backward_weights is not None:
        state.update(_direction(kind, backward_weights, hidden, "_reverse"))
    module.load_state_dict(state)
    return module


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", str(obj))


def _settings(layer: Any) -> tuple[Any, Any, str, str, bool]:
    """(forward layer, backward layer or None, kind, activation, go_backwards) of a Keras layer
    (a Bidirectional's two), refusing by name what rnnfast has no equivalent for; no weight is
    read yet."""
    kind = type(layer).__name__
    backward = None
    outer = layer
    if kind == "Bidirectional":
        if getattr(layer, "merge_mode", "concat") != "concat":
            raise ValueError(
                f"merge_mode: rnnfast concatenates the directions, got {layer.merge_mode!r}"
            )
        backward, layer, kind = (
            layer.backward_layer,
            layer.forward_layer,
            type(layer.forward_layer).__name__,
        )
    if kind not in KINDS:
        raise ValueError(f"layer: expected a Keras SimpleRNN, LSTM or GRU, got {kind}")
    if getattr(outer, "stateful", False) or getattr(layer, "stateful", False):
        raise ValueError(
            "stateful: rnnfast calls start from the state they are given; pass the previous "
            "call's final state as initial_state instead"
        )
    activation = _name(layer.activation)
    if kind != "SimpleRNN" and activation != "tanh":
        raise ValueError(f"activation: rnnfast's {kind} runs tanh, got {activation!r}")
    if kind != "SimpleRNN" and _name(layer.recurrent_activation) != "sigmoid":
        raise ValueError(
            f"recurrent_activation: rnnfast runs sigmoid, got {_name(layer.recurrent_activation)!r}"
        )
    go_backwards = bool(getattr(layer, "go_backwards", False))
    if go_backwards and backward is not None:
        raise ValueError("go_backwards: a Bidirectional's forward layer runs forwards")
    return layer, backward, kind, activation, go_backwards


def _module_of(layer: Any) -> tuple[RecurrentBase, bool]:
    """The rnnfast module of a Keras layer (a Bidirectional's both directions), and whether
    the layer runs backwards (go_backwards)."""
    layer, backward, kind, activation, go_backwards = _settings(layer)
    dtype = np.asarray(layer.get_weights()[0]).dtype
    module = from_weights(
        kind,
        layer.get_weights(),
        activation=activation,
        reset_after=getattr(layer, "reset_after", True),
        backward_weights=None if backward is None else backward.get_weights(),
        dtype=dtype,
    )
    return module, go_backwards


def from_keras(layer: Any) -> RecurrentBase:
    """An rnnfast module computing what the Keras 3 layer computes (a SimpleRNN, LSTM or GRU,
    or a Bidirectional of one merged by concatenation), with the same weights: `module(x)` gives
    every step's output and the final states. Settings a module cannot reproduce are refused by
    name: `return_sequences=False`, `go_backwards` (use `as_layer`, which returns what the layer
    returns), `stateful`, other activations and merge modes."""
    if _settings(layer)[4]:
        raise ValueError(
            "go_backwards: a module runs the sequence forwards; rnnfast.keras.as_layer(layer) "
            "runs it as the layer does"
        )
    if not getattr(layer, "return_sequences", True):
        raise ValueError(
            "return_sequences=False: a module returns every step; rnnfast.keras.as_layer(layer) "
            "returns what the layer returns (the last step)"
        )
    return _module_of(layer)[0]


class KerasLayer:
    """An rnnfast module called as the Keras layer it came from: `layer(x)` (x batch-first, as
    Keras's) returns Keras's output, every step or the last (`return_sequences`), for the
    sequence read backwards with `go_backwards`; with `return_state` a list [output, h(, c)]
    (a Bidirectional's: [output, h_fw(, c_fw), h_bw(, c_bw)]). `initial_state` as Keras takes
    it: the same list of states."""

    def __init__(
        self,
        module: RecurrentBase,
        *,
        return_sequences: bool,
        return_state: bool,
        go_backwards: bool = False,
    ) -> None:
        self.module = module
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)

    def _initial(self, initial_state: Any) -> Any:
        if initial_state is None:
            return None
        m = self.module
        per = 2 if m.cell == "lstm" else 1
        states = [np.asarray(s) for s in initial_state]
        if len(states) != per * m.num_directions:
            raise ValueError(
                f"initial_state: expected {per * m.num_directions} arrays (Keras's order), "
                f"got {len(states)}"
            )
        h = np.stack(states[0::per])
        return (h, np.stack(states[1::per])) if per == 2 else h

    def __call__(self, x: Any, initial_state: Any = None) -> Any:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x: expected (batch, steps, features), got shape {x.shape}")
        if self.go_backwards:
            x = np.ascontiguousarray(x[:, ::-1])
        y, state = self.module(x, self._initial(initial_state))
        h, c = state if isinstance(state, tuple) else (state, None)
        dirs = self.module.num_directions
        # The last step of each direction's own order: its final state.
        out = y if self.return_sequences else np.concatenate(list(h[-dirs:]), axis=-1)
        if not self.return_state:
            return out
        finals = []
        for d in range(dirs):
            k = h.shape[0] - dirs + d
            finals += [h[k]] if c is None else [h[k], c[k]]
        return [out, *finals]


def as_layer(layer: Any) -> KerasLayer:
    """The Keras 3 layer (SimpleRNN, LSTM, GRU, or a Bidirectional of one) as rnnfast computes
    it, honouring `return_sequences`, `return_state` and `go_backwards`: what `layer(x)`
    returns, from `as_layer(layer)(x)`."""
    module, go_backwards = _module_of(layer)
    return KerasLayer(
        module,
        return_sequences=getattr(layer, "return_sequences", False),
        return_state=getattr(layer, "return_state", False),
        go_backwards=go_backwards,
    )


__all__ = ["KerasLayer", "as_layer", "from_keras", "from_weights"]
