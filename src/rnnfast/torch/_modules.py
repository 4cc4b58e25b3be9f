"""torch.nn.RNN, LSTM and GRU with rnnfast's engine: subclasses that keep torch's constructor,
parameters, state dicts and forward, and replace only what forward computes with."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ._engine import (
    AUTOCAST_BF16_OUTPUTS,
    SUPPORTED_DTYPES,
    StackBinding,
    StackFunction,
    autocast_precision,
    check_params,
    check_tensor,
    follow_torch_threads,
    module_cell,
    runs_direct,
    torch_runs_it,
)
from ._ops import stack_forward

_KEY_RANGE = 2**63 - 1  # dropout keys: non-negative int64, so a compiled graph can hold them


def _float(t: Any) -> Any:
    """A bfloat16 tensor as float32 (differentiably); anything else as it is."""
    return t.float() if isinstance(t, Tensor) and t.dtype == torch.bfloat16 else t


def _check_construction(device: Any, dtype: Any) -> None:
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"device: rnnfast runs on the CPU; got {device!r}")
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"dtype: rnnfast runs torch.float32, torch.float64 and torch.bfloat16; got {dtype}"
        )


class _Packing:
    """Where each row of a PackedSequence's data sits in the padded (T, B) grid, in the batch's
    original order, and each sequence's length."""

    def __init__(self, packed: PackedSequence) -> None:
        sizes = packed.batch_sizes.tolist()
        steps, batch = len(sizes), sizes[0] if sizes else 0
        order = packed.sorted_indices
        t_idx = torch.repeat_interleave(torch.arange(steps), packed.batch_sizes)
        rank = (
            torch.cat([torch.arange(n) for n in sizes])
            if sizes
            else torch.zeros(0, dtype=torch.int64)
        )
        self.t, self.b = t_idx, (rank if order is None else order[rank])
        lengths_sorted = (packed.batch_sizes[None, :] > torch.arange(batch)[:, None]).sum(1)
        lengths = torch.empty(batch, dtype=torch.int64)
        lengths[torch.arange(batch) if order is None else order] = lengths_sorted
        self.steps, self.batch, self.lengths = steps, batch, lengths


def twin_of(module: Any, cls: type) -> Any:
    """An instance of torch's `cls` with `module`'s settings and the same Parameter objects,
    in containers of its own (`module` is left as it is)."""
    twin: Any = object.__new__(cls)
    state = {
        k: v for k, v in module.__dict__.items() if k not in ("_rnnfast", "linear_before_reset")
    }
    for key in ("_parameters", "_buffers", "_modules"):  # same entries, own containers
        state[key] = type(state[key])(state[key])
    twin.__dict__.update(state)
    return twin


class _RecurrentMixin:
    """forward(input, hx=None) as torch's, computed by rnnfast's C++ stack."""

    # Attributes torch.nn.RNNBase gives every instance.
    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    training: bool
    _flat_weights: list[Any]

    def _rnnfast_engine(self) -> StackBinding:
        engine = self.__dict__.get("_rnnfast")
        if engine is None:
            engine = StackBinding()
            self.__dict__["_rnnfast"] = engine
        return engine

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())  # type: ignore[call-overload]
        state.pop("_rnnfast", None)  # the C++ side is rebuilt on first use, never copied
        return state

    def flatten_parameters(self) -> None:
        """As torch's (nothing to do on the CPU). rnnfast needs no call after writes to the
        parameters, whatever the route: it compares their values at every call; this rebinds
        them all the same."""
        self._rnnfast_engine().invalidate()

    def _params(self) -> tuple[list[Tensor], Any]:
        """The parameters, checked, and (eager mode) the C++ stack bound to them. Refreshed
        first as torch's forward refreshes them: torch.func.functional_call and
        parametrizations (weight_norm, orthogonal, ...) hand the module other tensors than
        `_flat_weights` holds, and the stale ones gave their own values and no gradient."""
        self._refresh_flat_weights()
        params = self._flat_weights
        if torch.compiler.is_compiling():  # traced once: the custom operator gets them
            check_params(self, params)  # type: ignore[arg-type]  # a mixin of RNNBase
            return params, None
        return params, self._rnnfast_engine().stack_for(self, params)  # type: ignore[arg-type]

    def _refresh_flat_weights(self) -> None:
        """torch's `_update_flat_weights`, after a cheap look: when every weight is still the
        Parameter `_flat_weights` holds, nothing changed (torch's own check goes through
        Module.__getattr__ twice a weight: 11 us a call of a 2-layer LSTM)."""
        found, flat = self._parameters, self._flat_weights  # type: ignore[attr-defined]
        for name, held in zip(self._flat_weights_names, flat):  # type: ignore[attr-defined]
            if found.get(name) is not held:
                self._update_flat_weights()  # type: ignore[attr-defined]  # RNNBase's
                return

    def _state_shapes(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return (layers, batch, self.proj_size or self.hidden_size), (
            layers,
            batch,
            self.hidden_size,
        )

    def _check_hx(self, hx: Any, batch: int, unbatched: bool, dtype: torch.dtype) -> tuple:
        lstm = self.mode == "LSTM"
        if hx is None:
            return None, None
        parts = hx if lstm else (hx,)
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx: expected a pair (h_0, c_0) for LSTM, got {type(hx).__name__}")
        names = ("hx[0] (h_0)", "hx[1] (c_0)") if lstm else ("hx",)
        shapes = self._state_shapes(batch)
        out = []
        for part, name, shape in zip(parts, names, shapes):
            if not isinstance(part, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(part).__name__}")
            check_tensor(part, name)
            if part.dtype != dtype:
                raise TypeError(f"{name}: expected dtype {dtype} (the input's), got {part.dtype}")
            want = shape[::2] if unbatched else shape
            if tuple(part.shape) != want:
                raise ValueError(f"{name}: expected shape {want}, got {tuple(part.shape)}")
            part = part.unsqueeze(1) if unbatched else part
            out.append(part.resolve_neg().contiguous())
        return (out[0], out[1]) if lstm else (out[0], None)

    def torch_twin(self) -> torch.nn.RNNBase:
        """torch.nn's own module computing the same thing with the same Parameter objects (this
        module is left as it is): what tracing, exporting and scripting see."""
        if self.mode == "GRU" and not getattr(self, "linear_before_reset", True):
            raise RuntimeError(
                "a GRU with linear_before_reset=False has no torch.nn form to trace, export, "
                "script or transform with torch.func (torch.nn.GRU does not compute it); only "
                "rnnfast runs it"
            )
        cls: type[torch.nn.RNNBase] = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(
            self.mode, torch.nn.RNN
        )
        return twin_of(self, cls)

    def __prepare_scriptable__(self) -> torch.nn.RNNBase:
        """torch.jit.script compiles torch's own module (same Parameters): rnnfast's engine is
        not TorchScript."""
        return self.torch_twin()

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        if torch_runs_it():
            return self.torch_twin()(input, hx)
        precision, bf16_params = self._precision()
        if precision == "bf16":
            input, hx = self._as_float32(input, hx, bf16_params)
        packing = None
        if isinstance(input, PackedSequence):
            packing = _Packing(input)
            data = input.data
            check_tensor(data, "input")
            x = data.new_zeros(packing.steps, packing.batch, data.shape[-1])
            x = x.index_put((packing.t, packing.b), data)
            unbatched = False
        elif isinstance(input, Tensor):
            check_tensor(input, "input")
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"input: expected 3 dimensions ({'B, T' if self.batch_first else 'T, B'}, "
                    f"input_size) or 2 (T, input_size) for one sequence, got {input.dim()}"
                )
            unbatched = input.dim() == 2
            if unbatched:
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
        else:
            raise TypeError(
                f"input: expected a Tensor or PackedSequence, got {type(input).__name__}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input: expected input_size {self.input_size} (last dimension), got {x.shape[-1]}"
            )
        params, stack = self._params()
        if x.dtype != params[0].dtype and not bf16_params:
            raise TypeError(
                f"input: expected dtype {params[0].dtype} (the parameters'), got {x.dtype}"
            )
        x = x.resolve_neg().contiguous()  # (NumPy refuses torch's lazily negated views)
        h0, c0 = self._check_hx(hx, x.shape[1], unbatched, x.dtype)
        lengths = None if packing is None else packing.lengths
        y, h_n, c_n = self._run(x, h0, c0, lengths, params, stack, precision)
        if precision == "bf16" and (bf16_params or self.mode in AUTOCAST_BF16_OUTPUTS):
            y, h_n = y.to(torch.bfloat16), h_n.to(torch.bfloat16)
            # (Under autocast torch's projected LSTM, not oneDNN's, keeps c_n float32.)
            if c_n is not None and (bf16_params or not self.proj_size):
                c_n = c_n.to(torch.bfloat16)

        lstm = self.mode == "LSTM"
        if packing is not None:
            out: Any = PackedSequence(
                y[packing.t, packing.b],
                input.batch_sizes,
                input.sorted_indices,
                input.unsorted_indices,
            )
        elif unbatched:
            out, h_n = y.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else c_n
        else:
            out = y.transpose(0, 1) if self.batch_first else y
        return out, ((h_n, c_n) if lstm else h_n)

    def _precision(self) -> tuple[str, bool]:
        """What the products compute in, and whether the parameters are bfloat16. As torch.nn:
        a bfloat16 module computes in bf16; so does a float32 one under
        torch.autocast("cpu", bfloat16), where torch's LSTM and RNN return bfloat16 and its
        GRU float32 (AUTOCAST_BF16_OUTPUTS). bf16 here is rnnfast.LSTM's precision "bf16",
        on float32 copies of bfloat16 tensors."""
        w0 = self._flat_weights[0] if self._flat_weights else None
        dtype = w0.dtype if isinstance(w0, Tensor) else None
        if dtype == torch.bfloat16:
            return "bf16", True
        return (autocast_precision() if dtype == torch.float32 else "fp32"), False

    def _as_float32(self, input: Any, hx: Any, bf16_params: bool) -> tuple[Any, Any]:
        """The input and state of a bf16 run as float32 (differentiably); a bfloat16 module's
        input must be bfloat16, as torch's must."""
        data = input.data if isinstance(input, PackedSequence) else input
        if bf16_params and isinstance(data, Tensor) and data.dtype != torch.bfloat16:
            raise TypeError(
                f"input: expected dtype torch.bfloat16 (the parameters'), got {data.dtype}"
            )
        if isinstance(input, PackedSequence):
            input = input._replace(data=_float(input.data))
        else:
            input = _float(input)
        lstm_pair = self.mode == "LSTM" and isinstance(hx, (tuple, list))
        parts = tuple(hx) if lstm_pair else (hx,)
        for part in parts:
            if bf16_params and isinstance(part, Tensor) and part.dtype != torch.bfloat16:
                raise TypeError(
                    f"hx: expected dtype torch.bfloat16 (the input's), got {part.dtype}"
                )
        floats = tuple(_float(h) for h in parts)
        return input, (floats if lstm_pair else floats[0])

    def _run(
        self,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        lengths: Tensor | None,
        params: list[Tensor],
        stack: Any,
        precision: str = "fp32",
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        lstm = self.mode == "LSTM"
        drop = self.dropout if self.training and self.num_layers > 1 else 0.0
        if stack is None:  # compiling
            key = torch.randint(0, _KEY_RANGE, (1,), dtype=torch.int64)
            y, h_n, c_n = stack_forward(
                x,
                h0,
                c0,
                lengths,
                params,
                module_cell(self),  # type: ignore[arg-type]
                self.hidden_size,
                self.num_layers,
                self.bidirectional,
                self.bias,
                self.proj_size,
                float(drop),
                key,
                precision,
            )
            return y, h_n, (c_n if lstm else None)
        follow_torch_threads()
        seed = int(torch.randint(0, _KEY_RANGE, (1,)).item()) if drop else 0
        engine = self._rnnfast_engine()
        lens = None if lengths is None else lengths.numpy()
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad
            or any(p.requires_grad for p in params)
            or (h0 is not None and h0.requires_grad)
            or (c0 is not None and c0.requires_grad)
        )
        if not needs_grad:  # inference: no tape
            steps, batch = x.shape[0], x.shape[1]
            direct = steps == 1 and lens is None and not drop  # (dropout between layers)
            if direct and self._steps_direct(batch, x.dtype, precision):
                return self._direct_step(stack, x, h0, c0)
            y, h_n, c_n, _ = stack.forward(
                x.detach().numpy(),
                None if h0 is None else h0.detach().numpy(),
                None if c0 is None else c0.detach().numpy(),
                lens,
                False,
                engine.version,
                drop,
                seed,
                precision,
            )
            c_out = torch.from_numpy(c_n) if c_n is not None else None
            return torch.from_numpy(y), torch.from_numpy(h_n), c_out
        outs = StackFunction.apply(
            engine, stack, lstm, x, h0, c0, lens, drop, seed, precision, *params
        )
        return outs[0], outs[1], (outs[2] if lstm else None)

    def _steps_direct(self, batch: int, dtype: torch.dtype, precision: str) -> bool:
        """Whether a one-step call without autograd runs as a cell's step does, layer after
        layer (Stack.direct_stack_step: the weights read as they are). A decoder that steps a
        module one input at a time (T = 1) then skips comparing every weight with the packed
        copy's values: two thirds of such a call's C++ time with one LSTM(128) layer at B = 1,
        four fifths with two (their weights, copy and packs outgrow a core's L2)."""
        if self.bidirectional or self.proj_size or precision != "fp32":
            return False
        gru = self.mode == "GRU"
        if gru and not getattr(self, "linear_before_reset", True):
            return False  # (a GRU's attribute only: a missing one costs Module.__getattr__)
        rnn = self.mode.startswith("RNN")
        return runs_direct(rnn, self.hidden_size, batch, False, dtype == torch.float32)

    def _direct_step(
        self, stack: Any, x: Tensor, h0: Tensor | None, c0: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """y, h_n, c_n of one step (x (1, B, I); h0, c0 (L, B, H), contiguous)."""
        h_n, c_n = stack.direct_stack_step(
            x.detach().numpy()[0],
            None if h0 is None else h0.detach().numpy(),
            None if c0 is None else c0.detach().numpy(),
        )
        # y (the last layer's h) in memory of its own, as torch's: a write to one leaves the
        # other as it was.
        y = torch.from_numpy(h_n[-1:].copy())
        return y, torch.from_numpy(h_n), None if c_n is None else torch.from_numpy(c_n)


# The classes derive from torch.nn.RNNBase, not from nn.RNN/LSTM/GRU: torch.compile (Dynamo)
# refuses to trace instances of those three, and these trace through custom operators.


class RNN(_RecurrentMixin, torch.nn.RNNBase):
    """torch.nn.RNN (tanh or relu) computed by rnnfast: same constructor, parameters and
    forward."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_construction(device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(mode, *args, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(_RecurrentMixin, torch.nn.RNNBase):
    """torch.nn.LSTM (proj_size included) computed by rnnfast: same constructor, parameters
    and forward."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_construction(device, dtype)
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__("LSTM", *args, proj_size, device=device, dtype=dtype)


class GRU(_RecurrentMixin, torch.nn.RNNBase):
    """torch.nn.GRU computed by rnnfast: same constructor, parameters and forward, plus
    `linear_before_reset` (True: torch's n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); False:
    the original GRU's n = tanh(W_in x + b_in + W_hn (r*h) + b_hn), which torch lacks)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        linear_before_reset: bool = True,
    ) -> None:
        _check_construction(device, dtype)
        if not isinstance(linear_before_reset, (bool, np.bool_)):
            raise TypeError(
                f"linear_before_reset: expected a bool, got {type(linear_before_reset).__name__}"
            )
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__("GRU", *args, device=device, dtype=dtype)
        self.linear_before_reset = bool(linear_before_reset)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.linear_before_reset else text + ", linear_before_reset=False"
