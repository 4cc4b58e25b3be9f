r"""Plain NumPy forward and BPTT for RNN, LSTM and GRU: the oracle and the speed baseline.

Same classes and signatures as `rnnfast.RNN`, `rnnfast.LSTM`, `rnnfast.GRU`, written to be read
next to the equations (x_t input, h_{t-1} previous state, sigma the logistic function):

Elman RNN::

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),          act = tanh or relu

LSTM (gate rows i, f, g, o)::

    a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                 (with proj_size: h_t = W_hr (o * tanh(c_t)))
    (with peepholes: a_i += p_i c_{t-1}, a_f += p_f c_{t-1}, a_o += p_o c_t)

GRU (gate rows r, z, n)::

    r = sigma(W_ir x + b_ir + W_hr h + b_hr),  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      linear before reset (PyTorch, default)
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)      reset before (Cho et al. 2014)
    h_t = (1 - z) * n + z * h_{t-1}

BPTT runs the steps backwards, carrying dL/dh (and dL/dc) from step t to t-1; each step's
parameter gradients are added as outer products. A sequence of length L_b has real steps
t < L_b: its later outputs are zero, its state is carried unchanged and no gradient flows there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._cells import CELLS
from ._recurrent import GRUBase, LSTMBase, RecurrentBase, RNNBase, StepState

# Gates per cell: the rows of W_ih and W_hh are gates x hidden_size.
GATES = {name: kind.gates for name, kind in CELLS.items()}


_U64 = np.uint64


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def dropout_factors(size: int, p: float, key: int, layer: int, dtype: Any) -> np.ndarray:
    """The factors (0 or 1/(1-p)) that dropout multiplies the `size` values of layer `layer`'s
    output by (flat, time-major (T, B, D*S) order), for masks named `key`: the values whose hash
    mix64(mix64(key ^ mix64(layer)) + index), shifted right by 40, is >= round(p * 2^24) are kept.
    The C++ engine computes the same (rnn/dropout.h)."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        stream = _mix64(np.array([key], _U64) ^ _mix64(np.array([layer], _U64)))
        bits = _mix64(stream + np.arange(size, dtype=_U64))
    keep = (bits >> _U64(40)) >= _U64(round(p * 2**24))
    one = dtype.type(1)
    scale = one / (one - dtype.type(p)) if p < 1 else dtype.type(0)
    return np.where(keep, scale, dtype.type(0)).astype(dtype)


def sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)), computed without overflow for any a."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype)


def _direction_forward(
    cell: str,
    x: np.ndarray,
    w: tuple,
    h0: np.ndarray,
    c0: np.ndarray | None,
    mask: np.ndarray,
    reverse: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[dict]]:
    """One direction over the sequence. mask[t, b] says whether step t is real for sequence b."""
    w_ih, w_hh, b_ih, b_hh, w_hr, w_p = w
    steps, batch, _ = x.shape
    hd = w_hh.shape[0] // GATES[cell]
    y = np.zeros((steps, batch, h0.shape[1]), x.dtype)
    h, c = h0, c0
    cache = []
    c_new: Any = None  # LSTM's new cell state
    for t in reversed(range(steps)) if reverse else range(steps):
        m = mask[t][:, None]
        xw = x[t] @ w_ih.T + b_ih  # input side of every gate
        hw = h @ w_hh.T + b_hh  # recurrent side of every gate
        step: dict[str, Any] = {"t": t, "h_prev": h, "c_prev": c}
        if cell in ("rnn_tanh", "rnn_relu"):
            a = xw + hw
            h_new = np.tanh(a) if cell == "rnn_tanh" else np.maximum(a, 0)
            c_new = None
        elif cell == "lstm":
            a = xw + hw
            a_i, a_f, a_o = a[:, :hd], a[:, hd : 2 * hd], a[:, 3 * hd :]
            if w_p is not None:  # peepholes: i and f see c_{t-1}
                a_i, a_f = a_i + w_p[:hd] * c, a_f + w_p[hd : 2 * hd] * c
            i, f = sigmoid(a_i), sigmoid(a_f)
            g = np.tanh(a[:, 2 * hd : 3 * hd])
            c_new = f * c + i * g
            if w_p is not None:  # o sees c_t
                a_o = a_o + w_p[2 * hd :] * c_new
            o = sigmoid(a_o)
            h_new = o * np.tanh(c_new)
            step.update(i=i, f=f, g=g, o=o, c=c_new)
            if w_hr is not None:  # LSTMP: the state is a projection of the cell's output m
                step["m"] = h_new
                h_new = h_new @ w_hr.T
        else:  # GRU
            r = sigmoid(xw[:, :hd] + hw[:, :hd])
            z = sigmoid(xw[:, hd : 2 * hd] + hw[:, hd : 2 * hd])
            if cell == "gru":
                hn_lin = hw[:, 2 * hd :]  # W_hn h + b_hn
                n = np.tanh(xw[:, 2 * hd :] + r * hn_lin)
                step.update(hn_lin=hn_lin)
            else:
                rh = r * h
                n = np.tanh(xw[:, 2 * hd :] + rh @ w_hh[2 * hd :].T + b_hh[2 * hd :])
                step.update(rh=rh)
            h_new = (1 - z) * n + z * h
            c_new = None
            step.update(r=r, z=z, n=n)
        step["h"] = h_new
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
        if c is not None:
            c = np.where(m, c_new, c)
        cache.append(step)
    return y, h, c, cache


def _direction_backward(
    cell: str,
    x: np.ndarray,
    w: tuple,
    grads: list[Any],  # arrays, None where the module has no such parameter
    cache: list[dict],
    dy: np.ndarray | None,
    dh: np.ndarray,
    dc: np.ndarray | None,
    mask: np.ndarray,
    record: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """BPTT through one direction; adds to grads = [dW_ih, dW_hh, db_ih, db_hh, dW_hr] in
    place. `record` ("dh" (T, B, S), "dc" (T, B, H)), if given, receives dL/dh_t and dL/dc_t of
    every step (zero past a sequence's length)."""
    w_hh, w_hr, w_p = w[1], w[4], w[5]
    gw_ih, gw_hh, gb_ih, gb_hh, gw_hr, gw_p = grads
    hd = w_hh.shape[0] // GATES[cell]
    dx = np.zeros_like(x)
    w_ih = w[0]
    dc_prev: Any = None  # LSTM's gradient of the previous cell state
    for step in reversed(cache):
        t = step["t"]
        m = mask[t][:, None]
        if dy is not None:
            dh = dh + np.where(m, dy[t], 0)
        if record is not None:
            record["dh"][t] = np.where(m, dh, 0)
        h_prev = step["h_prev"]
        if cell in ("rnn_tanh", "rnn_relu"):
            # ReLU's slope is 1 at NaN, as in PyTorch (its gradient passes there).
            h = step["h"]
            slope = 1 - h**2 if cell == "rnn_tanh" else np.where(h <= 0, 0, 1).astype(x.dtype)
            da_x = dh * slope
            da_h = da_x
            dh_prev = np.zeros_like(dh)
            dc_prev = None
        elif cell == "lstm":
            i, f, g, o, c = step["i"], step["f"], step["g"], step["o"], step["c"]
            dh_state = dh
            if w_hr is not None:  # through the projection: dm = dh W_hr, dW_hr += dh^T m
                gw_hr += dh[mask[t]].T @ step["m"][mask[t]]
                dh = dh @ w_hr
            tc = np.tanh(c)
            da_o = dh * tc * o * (1 - o)
            dc_total = dc + dh * o * (1 - tc**2)
            if w_p is not None:  # c_t also reached o
                dc_total = dc_total + da_o * w_p[2 * hd :]
            if record is not None:
                record["dc"][t] = np.where(m, dc_total, 0)
            c_prev = step["c_prev"]
            da_i = dc_total * g * i * (1 - i)
            da_f = dc_total * c_prev * f * (1 - f)
            da_x = np.concatenate([da_i, da_f, dc_total * i * (1 - g**2), da_o], axis=1)
            da_h = da_x
            dh_prev = np.zeros_like(dh_state)
            dh = dh_state  # an ended sequence passes its dh (of the state's width) through
            dc_prev = dc_total * f
            if w_p is not None:  # c_{t-1} also reached i and f; their peepholes' gradients
                dc_prev = dc_prev + da_i * w_p[:hd] + da_f * w_p[hd : 2 * hd]
                act = mask[t]
                gw_p[:hd] += (da_i * c_prev)[act].sum(axis=0)
                gw_p[hd : 2 * hd] += (da_f * c_prev)[act].sum(axis=0)
                gw_p[2 * hd :] += (da_o * c)[act].sum(axis=0)
        else:
            r, z, n = step["r"], step["z"], step["n"]
            dan = dh * (1 - z) * (1 - n**2)
            daz = dh * (h_prev - n) * z * (1 - z)
            dh_prev = dh * z
            dc_prev = None
            if cell == "gru":
                dar = dan * step["hn_lin"] * r * (1 - r)
                da_x = np.concatenate([dar, daz, dan], axis=1)
                da_h = np.concatenate([dar, daz, dan * r], axis=1)
            else:
                d_rh = dan @ w_hh[2 * hd :]
                dar = d_rh * h_prev * r * (1 - r)
                dh_prev = dh_prev + d_rh * r
                da_x = np.concatenate([dar, daz, dan], axis=1)
                da_h = da_x
        da_x = np.where(m, da_x, 0)
        da_h = np.where(m, da_h, 0)
        # Only the rows still running touch a gradient: whatever padding holds (NaN included)
        # must not reach one, and 0 * NaN would.
        act = mask[t]
        gw_ih += da_x[act].T @ x[t][act]
        if cell == "gru_reset_before":
            gw_hh[: 2 * hd] += da_h[act, : 2 * hd].T @ h_prev[act]
            gw_hh[2 * hd :] += da_h[act, 2 * hd :].T @ step["rh"][act]
            dh_prev = dh_prev + da_h[:, : 2 * hd] @ w_hh[: 2 * hd]
        else:
            gw_hh += da_h[act].T @ h_prev[act]
            dh_prev = dh_prev + da_h @ w_hh
        if gb_ih is not None:
            gb_ih += da_x[act].sum(axis=0)
            gb_hh += da_h[act].sum(axis=0)
        dx[t] = np.where(m, da_x @ w_ih, 0)
        dh = np.where(m, dh_prev, dh)  # an ended sequence passes dh through unchanged
        if dc is not None:
            dc = np.where(m, dc_prev, dc)
    return dx, dh, dc


def _quiet() -> np.errstate:
    """NumPy's warnings off: NaN and inf propagate by design, as in the C++ engine."""
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


class ReferenceEngine:
    """Layers and directions in NumPy; lengths become a (T, B) mask."""

    def attach(self, module: RecurrentBase) -> None:
        pass  # nothing is kept between calls

    def forward(
        self,
        module: RecurrentBase,
        x: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        training: bool,
        dropout: tuple[float, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
        if x.dtype.kind == "i":  # indices of one-hot rows: the rows themselves, plainly
            x = np.eye(module.input_size, dtype=module.dtype)[x]
        steps, batch, _ = x.shape
        dirs = module.num_directions
        layers = module.num_layers * dirs
        h0 = np.zeros((layers, batch, module._state_size), module.dtype) if h0 is None else h0
        if module.cell == "lstm" and c0 is None:
            c0 = np.zeros((layers, batch, module.hidden_size), module.dtype)
        if training:
            x = x.copy()  # backward must see x as it was, whatever the caller does next
        if batch == 0:  # no sequence: nothing runs, whatever T is
            y = np.zeros((steps, 0, dirs * module._state_size), module.dtype)
            c_n = None if c0 is None else c0.copy()
            return y, h0.copy(), c_n, ({"empty": x.shape} if training else None)
        lens = np.full(batch, steps) if lengths is None else lengths
        mask = np.arange(steps)[:, None] < lens[None, :]
        h_n, c_n = np.empty_like(h0), None if c0 is None else np.empty_like(c0)
        layer_in, inputs, caches, factors = x, [], [], []
        for layer in range(module.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                w = self._weights(module, layer, d)
                with _quiet():
                    y, h, c, cache = _direction_forward(
                        module.cell, layer_in, w, h0[k], None if c0 is None else c0[k], mask, d == 1
                    )
                outs.append(y)
                h_n[k] = h
                if c_n is not None:
                    c_n[k] = c
                caches.append(cache)
            inputs.append(layer_in)
            layer_in = np.concatenate(outs, axis=2)
            if dropout is not None and layer + 1 < module.num_layers:  # between layers only
                p, key = dropout
                f = dropout_factors(layer_in.size, p, key, layer, module.dtype)
                factors.append(f.reshape(layer_in.shape))
                layer_in = layer_in * factors[-1]
        saved = None
        if training:
            saved = {"inputs": inputs, "caches": caches, "mask": mask, "factors": factors}
        return layer_in, h_n, c_n, saved

    def backward(
        self,
        module: RecurrentBase,
        saved: Any,
        dy: np.ndarray | None,
        dh_n: np.ndarray | None,
        dc_n: np.ndarray | None,
        input_grad: bool = True,
        state_grads: bool = False,
    ) -> tuple[np.ndarray | None, ...]:
        sd, dirs = module._state_size, module.num_directions
        lstm = module.cell == "lstm"
        steps, batch = saved["empty"][:2] if "empty" in saved else saved["inputs"][0].shape[:2]
        shape = (module.num_layers * dirs, batch, sd)
        cell_shape = (module.num_layers * dirs, batch, module.hidden_size)
        dh_n = np.zeros(shape, module.dtype) if dh_n is None else dh_n
        dc_n = (np.zeros(cell_shape, module.dtype) if dc_n is None else dc_n) if lstm else None
        # dL/dh_t and dL/dc_t of every step, when asked for: (L*D, T, B, S) and (L*D, T, B, H).
        count = module.num_layers * dirs
        dhs = np.zeros((count, steps, batch, sd), module.dtype) if state_grads else None
        dcs = None
        if state_grads and lstm:
            dcs = np.zeros((count, steps, batch, module.hidden_size), module.dtype)
        extra = (dhs, dcs) if state_grads else ()
        if "empty" in saved:  # nothing ran: the gradient passes to the initial state
            dc0 = None if dc_n is None else dc_n.copy()
            return (np.zeros(saved["empty"], module.dtype), dh_n.copy(), dc0, *extra)
        inputs, caches, mask = saved["inputs"], saved["caches"], saved["mask"]
        dh0 = np.empty(shape, module.dtype)
        dc0 = np.empty(cell_shape, module.dtype) if lstm else None
        d_out = dy
        for layer in reversed(range(module.num_layers)):
            dx_total = np.zeros_like(inputs[layer])
            for d in range(dirs):
                k = layer * dirs + d
                suffix = f"l{layer}{'_reverse' if d else ''}"
                grads = [
                    module.grads.get(f"{kind}_{suffix}")
                    for kind in (
                        "weight_ih",
                        "weight_hh",
                        "bias_ih",
                        "bias_hh",
                        "weight_hr",
                        "weight_p",
                    )
                ]
                dy_d = None if d_out is None else d_out[:, :, d * sd : (d + 1) * sd]
                with _quiet():
                    dx, dh, dc = _direction_backward(
                        module.cell,
                        inputs[layer],
                        self._weights(module, layer, d),
                        grads,
                        caches[k],
                        dy_d,
                        dh_n[k],
                        None if dc_n is None else dc_n[k],
                        mask,
                        None if dhs is None else {"dh": dhs[k], "dc": dcs[k] if lstm else None},  # type: ignore[index,dict-item]
                    )
                dx_total += dx
                dh0[k] = dh
                if dc0 is not None:
                    dc0[k] = dc
            d_out = dx_total
            if layer > 0 and saved["factors"]:  # through the dropout before this layer
                d_out = d_out * saved["factors"][layer - 1]
        assert d_out is not None
        return (d_out, dh0, dc0, *extra)

    def step(self, module: RecurrentBase, x: np.ndarray, state: StepState) -> None:
        """One timestep: a forward over one step, the state carried."""
        y, h, c, _ = self.forward(module, x[None], state.h, state.c, None, False)
        state.h[...] = h
        if c is not None and state.c is not None:
            state.c[...] = c
        state.y[...] = y[0]

    @staticmethod
    def _weights(module: RecurrentBase, layer: int, d: int) -> tuple[np.ndarray | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr, w_p): biases zero without bias, the last two None
        when the module has neither."""
        w_ih, w_hh, b_ih, b_hh = module.layer_weights(layer, d)
        assert w_hh is not None
        if b_ih is None:  # no bias: zeros keep the equations as written
            gh = w_hh.shape[0]
            b_ih, b_hh = np.zeros(gh, module.dtype), np.zeros(gh, module.dtype)
        return (
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            module.projection(layer, d),
            module.peephole_weights(layer, d),
        )


_REFERENCE = ReferenceEngine()


class RNN(RNNBase):
    __doc__ = RNNBase.__doc__
    _engine = _REFERENCE


class LSTM(LSTMBase):
    __doc__ = LSTMBase.__doc__
    _engine = _REFERENCE


class GRU(GRUBase):
    __doc__ = GRUBase.__doc__
    _engine = _REFERENCE


__all__ = ["GRU", "LSTM", "RNN", "ReferenceEngine", "dropout_factors", "sigmoid"]
