"""The C++ engine: the stack of layers and directions, each direction one call into the core."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._modules import GRUBase, LSTMBase, RecurrentBase, RNNBase

_CELL_CODES = {
    "rnn_tanh": _core.CELL_RNN_TANH,
    "rnn_relu": _core.CELL_RNN_RELU,
    "lstm": _core.CELL_LSTM,
    "gru": _core.CELL_GRU,
    "gru_reset_before": _core.CELL_GRU_RESET_BEFORE,
}


class FastEngine:
    """Runs each layer's directions in the C++ core; keeps the layer inputs and per-direction
    tapes (gates, states) for backward."""

    def forward(
        self,
        module: RecurrentBase,
        x: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        training: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
        cell = _CELL_CODES[module.cell]
        steps, batch, _ = x.shape
        hd, dirs = module.hidden_size, module.num_directions
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0) if c0 is not None else None
        inputs, tapes = [], []
        layer_in = x
        for layer in range(module.num_layers):
            y = np.empty((steps, batch, dirs * hd), module.dtype)
            for d in range(dirs):
                k = layer * dirs + d
                w_ih, w_hh, b_ih, b_hh = module.layer_weights(layer, d)
                hn, cn, tape = _core.layer_forward(
                    cell,
                    d == 1,
                    layer_in,
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    h0[k],
                    None if c0 is None else c0[k],
                    lengths,
                    y,
                    d * hd,
                    training,
                )
                h_n[k] = hn
                if c_n is not None:
                    c_n[k] = cn
                tapes.append(tape)
            inputs.append(layer_in)
            layer_in = y
        saved = {"inputs": inputs, "tapes": tapes, "lengths": lengths} if training else None
        return layer_in, h_n, c_n, saved

    def backward(
        self,
        module: RecurrentBase,
        saved: Any,
        dy: np.ndarray | None,
        dh_n: np.ndarray | None,
        dc_n: np.ndarray | None,
        input_grad: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        cell = _CELL_CODES[module.cell]
        inputs, tapes, lengths = saved["inputs"], saved["tapes"], saved["lengths"]
        hd, dirs = module.hidden_size, module.num_directions
        _, batch, _ = inputs[0].shape
        shape = (module.num_layers * dirs, batch, hd)
        dh0 = np.empty(shape, module.dtype)
        dc0 = np.empty(shape, module.dtype) if module.cell == "lstm" else None
        d_out = dy
        suffixes = ("", "_reverse")
        for layer in reversed(range(module.num_layers)):
            x = inputs[layer]
            # The first layer's input gradient only when asked for (deeper layers need theirs).
            dx = np.empty_like(x) if layer > 0 or input_grad else None
            for d in range(dirs):
                k = layer * dirs + d
                w_ih, w_hh, _, _ = module.layer_weights(layer, d)
                s = f"l{layer}{suffixes[d]}"
                g = module.grads
                dh, dc = _core.layer_backward(
                    cell,
                    d == 1,
                    x,
                    w_ih,
                    w_hh,
                    lengths,
                    tapes[k],
                    d_out,
                    d * hd,
                    None if dh_n is None else dh_n[k],
                    None if dc_n is None else dc_n[k],
                    dx,
                    d == 1,
                    g[f"weight_ih_{s}"],
                    g[f"weight_hh_{s}"],
                    g.get(f"bias_ih_{s}"),
                    g.get(f"bias_hh_{s}"),
                )
                dh0[k] = dh
                if dc0 is not None:
                    dc0[k] = dc
            d_out = dx
        return d_out, dh0, dc0


_FAST = FastEngine()


class RNN(RNNBase):
    __doc__ = RNNBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST


class LSTM(LSTMBase):
    __doc__ = LSTMBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST


class GRU(GRUBase):
    __doc__ = GRUBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST
