"""torch.nn.RNNCell, LSTMCell and GRUCell with rnnfast's engine: one timestep of a one-layer stack
(the cell's weight_ih/weight_hh/bias_ih/bias_hh are that layer's), one C++ call forward and one
backward, under the same constructor, parameters, state dicts and forward as torch's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._engine import (
    StackBinding,
    autocast_precision,
    check_params,
    check_tensor,
    differentiable_grads,
    follow_torch_threads,
    once_differentiable,
    param_grads,
    runs_direct,
    torch_runs_it,
)
from ._modules import _check_construction, _float, _RecurrentMixin, twin_of

_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_PLAIN_DTYPES = (torch.float32, torch.float64)


class _CellMixin(_RecurrentMixin):
    """forward(input, hx=None) as torch's cells', computed by rnnfast's C++ stack with T = 1."""

    # What the stack driver reads of an RNNBase; a cell is one unidirectional layer.
    num_layers = 1
    bidirectional = False
    proj_size = 0
    dropout = 0.0
    batch_first = False
    _TORCH: type[torch.nn.RNNCellBase]

    @property
    def _flat_weights_names(self) -> list[str]:
        return list(self._names())

    def _names(self) -> tuple[str, ...]:
        return _NAMES if self.bias else _NAMES[:2]

    @property
    def _flat_weights(self) -> list[Any]:  # type: ignore[override]  # read-only here
        return [getattr(self, name) for name in self._flat_weights_names]

    def torch_twin(self) -> torch.nn.RNNCellBase:  # type: ignore[override]
        """torch.nn's own cell with the same Parameter objects (this cell is left as it is)."""
        return twin_of(self, self._TORCH)

    def _cell_params(self) -> list[Any]:
        """The parameters by name: `_parameters` first (Module.__getattr__ costs a microsecond
        each, a fifth of a small cell's step), then attributes (weight_norm-style hooks)."""
        found = self._parameters  # type: ignore[attr-defined]  # a mixin of RNNCellBase
        out = []
        for name in self._names():
            p = found.get(name)
            out.append(p if p is not None else getattr(self, name))
        return out

    def forward(self, input: Any, hx: Any = None) -> Any:
        out = self._plain_call(input, hx)
        if out is not None:
            return out
        if torch_runs_it():
            return self.torch_twin()(input, hx)
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        # A bfloat16 cell computes in bf16 and returns bfloat16, as torch's; under
        # torch.autocast("cpu", bfloat16) torch's cells compute in bf16 too, RNNCell returning
        # bfloat16, LSTMCell and GRUCell float32. The same here (see _modules.py).
        w0 = self._parameters.get("weight_ih")  # type: ignore[attr-defined]
        bf16_params = isinstance(w0, Tensor) and w0.dtype == torch.bfloat16
        float32 = isinstance(w0, Tensor) and w0.dtype == torch.float32
        precision = "bf16" if bf16_params else (autocast_precision() if float32 else "fp32")
        if precision == "bf16":
            if bf16_params and input.dtype != torch.bfloat16:
                raise TypeError(
                    f"input: expected dtype torch.bfloat16 (the parameters'), got {input.dtype}"
                )
            input = _float(input)
            hx = tuple(_float(h) for h in hx) if isinstance(hx, (tuple, list)) else _float(hx)
        check_tensor(input, "input")
        if input.dim() not in (1, 2):
            raise ValueError(
                f"input: {type(self).__name__} expects 2 dimensions (batch, input_size) or 1 "
                f"(input_size), got {input.dim()}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"input: expected input_size {self.input_size} (last dimension), "
                f"got {input.shape[-1]}"
            )
        batched = input.dim() == 2
        batch = input.shape[0] if batched else 1
        params = self._cell_params()
        compiling = torch.compiler.is_compiling()
        if compiling:
            check_params(self, params)  # type: ignore[arg-type]  # a cell stands for RNNBase
            stack = None
        else:
            stack = self._rnnfast_engine().stack_for(self, params)  # type: ignore[arg-type]
        if input.dtype != params[0].dtype and not bf16_params:
            raise TypeError(
                f"input: expected dtype {params[0].dtype} (the parameters'), got {input.dtype}"
            )
        lstm = self.mode == "LSTM"
        h0, c0 = self._cell_state(hx, lstm, batched, batch, input.dtype)
        shape = (batch, self.hidden_size) if batched else (self.hidden_size,)
        if not compiling and not _needs_grad(input, h0, c0, params):
            out = self._infer(stack, input, h0, c0, batch, shape, precision)
        elif not compiling:
            follow_torch_threads()
            out = CellFunction.apply(
                self._call_for(stack, precision, input.shape, shape, batch), input, h0, c0, *params
            )
        else:
            x = input.reshape(1, batch, self.input_size).contiguous()
            h0 = None if h0 is None else h0.reshape(1, batch, self.hidden_size).contiguous()
            c0 = None if c0 is None else c0.reshape(1, batch, self.hidden_size).contiguous()
            _, h_n, c_n = self._run(x, h0, c0, None, params, stack, precision)
            h = h_n.view(shape)
            out = (h, c_n.view(shape)) if lstm and c_n is not None else h
        if precision == "bf16" and (bf16_params or self.mode in ("RNN_TANH", "RNN_RELU")):
            return (
                tuple(o.to(torch.bfloat16) for o in out)
                if isinstance(out, tuple)
                else (out.to(torch.bfloat16))
            )
        return out

    def _call_for(
        self,
        stack: Any,
        precision: str,
        input_shape: torch.Size,
        shape: tuple[int, ...],
        batch: int,
    ) -> _CellCall:
        """The call description of a step of these shapes: the last one when it fits (a loop's
        steps share one)."""
        engine = self._rnnfast_engine()
        key = (stack, precision, input_shape, batch)
        last_key, last = engine.cell_call
        if last_key != key:
            last = _CellCall(engine, stack, precision, input_shape, shape, batch)
            engine.cell_call = (key, last)
        return last

    def _plain_call(self, input: Any, hx: Any) -> Any:
        """The common call, checked in a few tenths of a microsecond: float32 or float64
        tensors of the cell's own dtype, contiguous and in the shapes torch's cells take, no
        autocast, no tracing or transform. None for anything else, which the general path then
        runs or refuses by name (a loop of B = 1 steps spent two thirds of its time in that
        path's checks and conversions without autograd; with autograd it cost a B = 8 RNNCell
        training step 2.5 us of 35 before its backward)."""
        if (
            type(input) is not Tensor
            or torch.is_autocast_enabled("cpu")
            or torch.compiler.is_compiling()  # torch.compile records the custom operator
            or torch_runs_it()
        ):
            return None
        # Parameters only as registered: a parametrization (spectral_norm, weight_norm) computes
        # its weight at each read, spectral_norm stepping its power iteration in training mode
        # (under no_grad too), and the general path reads them again.
        found = self._parameters  # type: ignore[attr-defined]  # a mixin of RNNCellBase
        params = [found.get(name) for name in self._names()]
        dtype = input.dtype
        if dtype not in _PLAIN_DTYPES or not _dense(input):
            return None
        grad = torch.is_grad_enabled()
        needs_grad = grad and input.requires_grad
        for p in params:
            if type(p) is not torch.nn.Parameter or p.dtype != dtype:
                return None
            needs_grad = needs_grad or (grad and p.requires_grad)
        ndim = input.dim()
        shape = input.shape
        if ndim == 2:
            batch = shape[0]
            out_shape: tuple[int, ...] = (batch, self.hidden_size)
        elif ndim == 1:
            batch, out_shape = 1, (self.hidden_size,)
        else:
            return None
        if batch == 0 or shape[-1] != self.input_size or (input.requires_grad and not grad):
            return None
        lstm = self.mode == "LSTM"
        h0 = c0 = None
        if hx is not None:
            parts: Any = hx if lstm else (hx,)
            if type(parts) not in (tuple, list) or len(parts) != (2 if lstm else 1):
                return None
            for part in parts:
                if (
                    type(part) is not Tensor
                    or part.dtype != dtype
                    or part.shape != out_shape
                    or not _dense(part)
                ):
                    return None
                if part.requires_grad:
                    if not grad:
                        return None
                    needs_grad = True
            h0 = parts[0]
            c0 = parts[1] if lstm else None
        engine = self._rnnfast_engine()
        stack = engine.stack_for(self, params)  # type: ignore[arg-type]
        follow_torch_threads()
        if needs_grad:
            call = self._call_for(stack, "fp32", shape, out_shape, batch)
            return _apply_cell(call, input, h0, c0, *params)
        rnn = self.mode in ("RNN_TANH", "RNN_RELU")
        if runs_direct(rnn, self.hidden_size, batch, False, dtype == torch.float32):
            # The caller's tensors by address, read and never written: each is checked above as
            # direct_step_at needs (dtype, shape, dense and contiguous). NumPy views of them
            # were a sixth of a B = 1 step of a Python loop.
            h, c = stack.direct_step_at(
                batch,
                input.data_ptr(),
                0 if h0 is None else h0.data_ptr(),
                0 if c0 is None else c0.data_ptr(),
            )
        else:
            state = (1, batch, self.hidden_size)  # the engine's shape of a state
            # NumPy views of the caller's tensors, read and never written.
            _, h, c, _ = stack.forward(
                input.numpy().reshape(1, batch, self.input_size),
                None if h0 is None else h0.numpy().reshape(state),
                None if c0 is None else c0.numpy().reshape(state),
                None,
                False,
                engine.version,
                0.0,
                0,
                "fp32",
            )
        if h.shape != out_shape:
            h = h.reshape(out_shape)
            c = None if c is None else c.reshape(out_shape)
        return (torch.from_numpy(h), torch.from_numpy(c)) if c is not None else torch.from_numpy(h)

    def _infer(
        self,
        stack: Any,
        input: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        batch: int,
        shape: tuple[int, ...],
        precision: str = "fp32",
    ) -> Any:
        """No autograd: one engine call on NumPy views (torch's own ops cost a microsecond
        each, as much as a small cell's product)."""
        follow_torch_threads()
        state = (1, batch, self.hidden_size)
        _, h_n, c_n, _ = stack.forward(
            _array(input, (1, batch, self.input_size)),
            None if h0 is None else _array(h0, state),
            None if c0 is None else _array(c0, state),
            None,
            False,
            self._rnnfast_engine().version,
            0.0,
            0,
            precision,
        )
        h = torch.from_numpy(h_n.reshape(shape))
        return (h, torch.from_numpy(c_n.reshape(shape))) if c_n is not None else h

    def _cell_state(
        self, hx: Any, lstm: bool, batched: bool, batch: int, dtype: torch.dtype
    ) -> tuple[Tensor | None, Tensor | None]:
        """hx checked as torch's cells take it: None (zeros), or h (a pair (h, c) for LSTM) of
        shape (batch, hidden_size), (hidden_size,) with an unbatched input."""
        if hx is None:
            return None, None
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx: expected a pair (h, c) for LSTMCell, got {type(hx).__name__}")
        parts = tuple(hx) if lstm else (hx,)
        names = ("hx[0] (h)", "hx[1] (c)") if lstm else ("hx",)
        want = (batch, self.hidden_size) if batched else (self.hidden_size,)
        for part, name in zip(parts, names):
            if not isinstance(part, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(part).__name__}")
            check_tensor(part, name)
            if part.dtype != dtype:
                raise TypeError(f"{name}: expected dtype {dtype} (the input's), got {part.dtype}")
            if part.shape != want:
                raise ValueError(f"{name}: expected shape {want}, got {tuple(part.shape)}")
        return (parts[0], parts[1]) if lstm else (parts[0], None)


def _dense(t: Tensor) -> bool:
    """Whether `t`'s values are its memory as a C array: on the CPU, strided (not sparse or
    oneDNN's layout), contiguous, and no lazy negation (torch's neg bit)."""
    return t.is_cpu and t.layout is torch.strided and t.is_contiguous() and not t.is_neg()


def _needs_grad(x: Tensor, h0: Tensor | None, c0: Tensor | None, params: list[Tensor]) -> bool:
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad or any(p.requires_grad for p in params):
        return True
    return (h0 is not None and h0.requires_grad) or (c0 is not None and c0.requires_grad)


def _array(t: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous NumPy view (a copy only when `t` is strided) of `t` in `shape`."""
    if t.is_neg():  # torch's lazy negation (a real view of a conjugated complex tensor)
        t = t.resolve_neg()
    a = (t.detach() if t.requires_grad else t).numpy()  # (detach costs a microsecond)
    return (a if t.is_contiguous() else np.ascontiguousarray(a)).reshape(shape)


def _optional_array(t: Tensor | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if t is None else _array(t, shape)


class _CellCall:
    """What one CellFunction call runs with besides its tensors: the stack, the shapes of a
    T = 1 call and of the cell's own tensors, and whether the step runs direct (below)."""

    __slots__ = (
        "direct",
        "engine",
        "input_shape",
        "precision",
        "rows",
        "shape",
        "spec",
        "stack",
        "state",
        "x",
        "x_rows",
    )

    def __init__(
        self,
        engine: StackBinding,
        stack: Any,
        precision: str,
        input_shape: torch.Size,
        shape: tuple[int, ...],
        batch: int,
    ) -> None:
        self.engine, self.stack, self.precision = engine, stack, precision
        self.spec = engine.spec  # `stack`'s, for torch's operators in a create_graph backward
        self.input_shape, self.shape = input_shape, shape
        self.x = (1, batch, input_shape[-1])
        self.state = (1, batch, shape[-1])
        self.x_rows, self.rows = (batch, input_shape[-1]), (batch, shape[-1])
        # Steps in the module's own precision train on the weights as they are where they infer
        # so (runs_direct; Stack.direct_train_step and direct_backward): at B = 1 (LSTM, H =
        # 128) the packed path's forward and backward took 22 and 41 us, these 11 and 14.
        spec = engine.spec
        rnn = spec["cell"] in ("rnn_tanh", "rnn_relu")
        float32 = spec["dtype"] == "float32"
        self.direct = precision == "fp32" and runs_direct(
            rnn, spec["hidden_size"], batch, True, float32
        )

    # For differentiable_grads (_engine.py): the cell's tensors as a T = 1 stack's, and back.
    def inputs(self, x: Tensor, h0: Tensor | None, c0: Tensor | None) -> tuple[Any, ...]:
        return (
            x.reshape(self.x),
            None if h0 is None else h0.reshape(self.state),
            None if c0 is None else c0.reshape(self.state),
        )

    def outputs(self, outs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(o.reshape(self.shape) for o in outs[1:])


class CellFunction(torch.autograd.Function):
    """h (and c for LSTM) = one cell step, with autograd: the engine's T = 1 forward and backward
    (as StackFunction) on the cell's own shapes. One node in torch's graph, where reshaping to
    (1, B, .) around StackFunction added a view node on each side: a sixth of a B = 1 step."""

    @staticmethod
    def forward(
        ctx: Any,
        call: _CellCall,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        *params: Tensor,
    ) -> Any:
        arrays = None
        if call.direct:  # the tape keeps the weights this step ran with
            arrays = (
                _array(x, call.x_rows),
                _optional_array(h0, call.rows),
                _optional_array(c0, call.rows),
            )
            h_n, c_n, tape = call.stack.direct_train_step(*arrays)
        else:
            h_n, c_n, tape = _step_with_tape(call, x, h0, c0, call.engine.version)
        # The direct backward reads x, h0 and c0 again: their views (2 us a step to make), valid
        # while the tensors are unchanged, which unpacking saved_tensors checks first.
        ctx.arrays = arrays
        ctx.call, ctx.tape, ctx.dtype = call, tape, h_n.dtype
        ctx.param_dtype = params[0].dtype  # bfloat16 cells get bfloat16 gradients
        # Saved so that torch refuses a backward after any of them changed in place, and so that
        # a second backward (retain_graph=True) can make the spent tape again.
        ctx.save_for_backward(x, h0, c0, *params)
        ctx.set_materialize_grads(False)
        h = torch.from_numpy(h_n.reshape(call.shape))
        return h if c_n is None else (h, torch.from_numpy(c_n.reshape(call.shape)))

    @staticmethod
    def backward(ctx: Any, dh: Any, dc: Any = None) -> tuple[Any, ...]:
        create_graph = torch.is_grad_enabled()
        call: _CellCall = ctx.call
        if create_graph and call.precision == "fp32":  # a graph of the gradients: torch's ops
            x, h0, c0, *params = ctx.saved_tensors  # (the tape stays for a first-order pass)
            second = differentiable_grads(
                call.spec, ctx.needs_input_grad[1:], (x, h0, c0, params), (dh, dc), call
            )
            return (None, *second)
        if not create_graph:  # grad mode is off already (no_grad's context costs a microsecond)
            return _cell_backward(ctx, dh, dc)
        with torch.no_grad():
            grads = _cell_backward(ctx, dh, dc)
        return once_differentiable(grads, create_graph)


def _c_apply() -> Any:
    """CellFunction's apply without torch's Python wrapper, or None where this torch lacks it.

    torch.autograd.Function.apply is the C++ apply (torch._C._FunctionBase's) behind a wrapper
    for functorch transforms, which the plain path never runs in (torch_runs_it): 2.3 us of a
    cell's ~35 us training step (2-core Sapphire Rapids). A tensor a finished transform left
    behind works through either (tests/torch_dropin/test_torch_cells.py)."""
    base = getattr(torch._C, "_FunctionBase", None)
    method: Any = vars(base).get("apply") if base is not None else None
    return method.__get__(None, CellFunction) if hasattr(method, "__get__") else None


_C_APPLY = _c_apply()


def _apply_cell(*args: Any) -> Any:
    return _C_APPLY(*args) if _C_APPLY is not None else CellFunction.apply(*args)


def _step_with_tape(
    call: _CellCall, x: Tensor, h0: Tensor | None, c0: Tensor | None, version: int
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """The engine's T = 1 training forward: (h_n, c_n or None, tape)."""
    _, h_n, c_n, tape = call.stack.forward(
        _array(x, call.x),
        _optional_array(h0, call.state),
        _optional_array(c0, call.state),
        None,
        True,
        version,
        0.0,
        0,
        call.precision,
    )
    return h_n, c_n, tape


def _cell_backward(ctx: Any, dh: Tensor | None, dc: Tensor | None) -> tuple[Any, ...]:
    """CellFunction's gradients: (None, dx, dh0, dc0, the parameters' gradients)."""
    x, h0, c0, *params = ctx.saved_tensors  # raises if any changed in place since forward
    call: _CellCall = ctx.call
    if call.direct:
        return _direct_backward(ctx, call, dh, dc)
    tape = ctx.tape
    if tape is None:  # a second backward through a retained graph: the same forward again
        with call.engine.lock, call.engine.bound_to(call.stack, params):
            tape = _step_with_tape(call, x, h0, c0, -1)[2]
    ctx.tape = None
    engine = call.engine
    grads = engine.new_grads(ctx.dtype)
    need = ctx.needs_input_grad
    with engine.lock:
        call.stack.set_grads(grads, assign=True)
        dx, dh0, dc0 = call.stack.backward(
            tape,
            None,
            _optional_array(dh, call.state),
            _optional_array(dc, call.state),
            need[1],
            False,
            -1,  # the tape's own packs: nothing to compare (see _engine.py)
        )
    return _step_grads(ctx, call, dx, dh0, dc0, grads)


def _direct_backward(
    ctx: Any, call: _CellCall, dh: Tensor | None, dc: Tensor | None
) -> tuple[Any, ...]:
    """_cell_backward of a direct step, from its tape (the gates and the weights it ran with;
    not used up: a retained graph's second backward runs the same) and the views of x, h0 and
    c0 its forward made (the caller has unpacked saved_tensors: they are unchanged). The
    gradients come back in new arrays: nothing of the stack is bound, so no lock is taken."""
    dx, dh0, dc0, grads = call.stack.direct_gradients(
        *ctx.arrays,
        ctx.tape,
        _optional_array(dh, call.rows),
        _optional_array(dc, call.rows),
        ctx.needs_input_grad[1],
    )
    return _step_grads(ctx, call, dx, dh0, dc0, grads)


def _step_grads(
    ctx: Any,
    call: _CellCall,
    dx: np.ndarray | None,
    dh0: np.ndarray | None,
    dc0: np.ndarray | None,
    grads: list[np.ndarray],
) -> tuple[Any, ...]:
    """CellFunction.backward's answer from the engine's arrays: the cell's shapes, None where
    no gradient was asked for."""
    need = ctx.needs_input_grad
    out_dx = torch.from_numpy(dx.reshape(call.input_shape)) if dx is not None else None
    out_dh0 = torch.from_numpy(dh0.reshape(call.shape)) if dh0 is not None and need[2] else None
    out_dc0 = torch.from_numpy(dc0.reshape(call.shape)) if dc0 is not None and need[3] else None
    return (None, out_dx, out_dh0, out_dc0, *param_grads(grads, ctx.param_dtype))


class RNNCell(_CellMixin, torch.nn.RNNCellBase):
    """torch.nn.RNNCell (tanh or relu) computed by rnnfast."""

    _TORCH = torch.nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_construction(device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


class _GatedCell(_CellMixin, torch.nn.RNNCellBase):
    """The constructor torch's LSTMCell and GRUCell share: (input_size, hidden_size, bias,
    device, dtype)."""

    _CHUNKS: int

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_construction(device, dtype)
        super().__init__(input_size, hidden_size, bias, self._CHUNKS, device=device, dtype=dtype)


class LSTMCell(_GatedCell):
    """torch.nn.LSTMCell computed by rnnfast."""

    _TORCH = torch.nn.LSTMCell
    _CHUNKS = 4
    mode = "LSTM"


class GRUCell(_GatedCell):
    """torch.nn.GRUCell computed by rnnfast (torch's form: the reset gate after the product)."""

    _TORCH = torch.nn.GRUCell
    _CHUNKS = 3
    mode = "GRU"


__all__ = ["GRUCell", "LSTMCell", "RNNCell"]
