"""The C++ stack behind a torch module, and the autograd Function that runs it.

Tensors reach the engine without copies: a contiguous CPU tensor and `tensor.numpy()` share
memory, and so do the engine's outputs and `torch.from_numpy`. The parameters are bound to the
stack once and rebound only when their storage moves (`.to()`, `param.data = ...`).

The packed weights are kept while the parameters' values stay the same, and the stack checks
that by comparing the values themselves with a copy of those it packed (VERIFY_PARAMS) at every
forward. torch's own counter (`tensor._version`) cannot serve: writes through `p.data`
(`p.data.add_(...)` in many training scripts, EMA and averaging helpers), `.detach()` views and
NumPy views of a parameter do not move it, and a cache keyed on it computed with stale weights.
Backward compares nothing: the tape holds the packs of the weights its forward ran with, so the
gradient is that forward's even after a write torch did not count (torch.nn mixes the two
weights then). The comparison reads the parameters twice per forward, about 1% of a large
training step; in a loop of one-step cell calls it was a third of each step when backward
compared too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad

from .. import _core, _runtime
from .._cells import of_torch_mode

# The engine's dtype for each torch dtype: a bfloat16 module runs a float32 stack in precision
# "bf16" from float32 copies of its parameters (StackBinding.stack_for).
SUPPORTED_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "float32"}


def stack_spec(module: torch.nn.RNNBase, dtype: torch.dtype) -> dict[str, Any]:
    """What the C++ stack is built from, by the names _core.Stack takes."""
    return {
        "cell": module_cell(module),
        "input_size": module.input_size,
        "hidden_size": module.hidden_size,
        "num_layers": module.num_layers,
        "bidirectional": module.bidirectional,
        "bias": module.bias,
        "dtype": SUPPORTED_DTYPES[dtype],
        "proj_size": module.proj_size,
    }


def module_cell(module: torch.nn.RNNBase) -> str:
    """The core's cell name of a torch module (rnnfast._cells)."""
    mode = module.mode
    # Only a GRU has the attribute; a missing one costs torch.nn.Module.__getattr__'s exception,
    # a microsecond on every call of a small module.
    lbr = getattr(module, "linear_before_reset", True) if mode == "GRU" else True
    return of_torch_mode(mode, lbr).name


# rows_dot loads each weight once for four batch rows where its kernel has lane_sums (float32
# on AVX-512), once a row elsewhere: the direct step's limits past four rows hold there only.
_GROUPED_ISA = _runtime.isa().startswith("avx512")


def runs_direct(rnn: bool, hidden: int, batch: int, training: bool, float32: bool) -> bool:
    """Whether a step (of an RNN cell with `rnn`, else of a gated cell) reads the weights as
    they are (Stack.direct_step and direct_train_step, src/cpp/rnn/direct_step.h) rather than
    comparing them with the packed copy's values and multiplying by the packs (whose T = 1
    backward also runs five parallel regions, each operand packed alone). The direct product
    loads each weight once per four batch rows (rows_dot); past a batch that depends on the
    size, the packed GEMMs win.

    A 2-core Sapphire Rapids, one step's C++ calls, us, packed against direct (inference;
    training forward and backward): H = 128 LSTM B = 8 20.9 vs 18.2, 76.8 vs 67.4; B = 16 30.8
    vs 30.6, 113.5 vs 98.7; B = 32 45.3 vs 57.7, 167.5 vs 181.8; RNN B = 32 16.6 vs 14.7, 63.4 vs
    53.3; H = 256 LSTM B = 32 223 vs 146, 576 vs 651; H = 48 LSTM B = 16 8.5 vs 12.2, 27.4 vs
    39.8. 100-step loops of LSTMCell(128) at B = 8 and 16 went from 1.32x and 1.56x torch.nn's
    speed to 1.81x and 1.85x without autograd, 1.23x and 1.20x to 1.30x and 1.28x training."""
    if batch <= 4:
        return True
    if hidden < 128:
        return False
    if not (float32 and _GROUPED_ISA):  # measured before rows_dot grouped its batch rows
        return rnn and training and batch <= 32
    return batch <= (32 if rnn or (hidden >= 256 and not training) else 16)


def follow_torch_threads() -> None:
    """Unless the user chose rnnfast's thread count, use torch's (its intra-op pool and rnnfast's
    team then never ask for more cores than torch was told it has)."""
    if not _runtime.threads_chosen():
        n = torch.get_num_threads()
        if n != _core.get_num_threads() and 1 <= n <= _core.MAX_THREADS:
            _core.set_num_threads(n)


def check_tensor(t: torch.Tensor, name: str) -> None:
    if not t.is_cpu:
        raise ValueError(f"{name}: rnnfast runs on the CPU; got a tensor on {t.device}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: rnnfast runs float32, float64 and bfloat16; got {t.dtype}")


def check_params(module: torch.nn.RNNBase, params: list[torch.Tensor]) -> None:
    """Every parameter on the CPU, float32, float64 or bfloat16, all of one dtype."""
    for p, name in zip(params, module._flat_weights_names):
        if p is None:
            raise ValueError(f"{name}: the parameter is None")
        check_tensor(p, name)
        if p.dtype != params[0].dtype:
            raise TypeError(f"{name}: parameters of mixed dtypes ({p.dtype}, {params[0].dtype})")


class StackBinding:
    """One torch module's C++ stack and the parameters bound to it (not to be confused with
    rnnfast._recurrent.Engine, the protocol of rnnfast's own engines)."""

    __slots__ = (
        "_keys",
        "_shadow",
        "_signature",
        "_spec",
        "_stack",
        "cell_call",
        "layout",
        "lock",
        "version",
    )

    def __init__(self) -> None:
        self._spec: dict[str, Any] | None = None
        self._signature: tuple[Any, ...] = ()  # stack_spec's inputs when _spec was built
        self._stack: Any = None
        self.lock = threading.Lock()  # bind-and-run (grads) is one step
        self._keys: list = []  # (data_ptr, shape, stride) of each parameter when bound
        # bfloat16 parameters: float32 copies, bound to the stack and refreshed at every call
        # (the stack then compares their values with those it packed, as for float32).
        self._shadow: list[torch.Tensor] = []
        # What the stack is told of the parameters' values: compare them (see the module doc).
        self.version = _core.VERIFY_PARAMS
        # Where each parameter's gradient sits in one flat array: (offset, size, shape).
        self.layout: list[tuple[int, int, tuple[int, ...]]] = []
        # A cell's last call description and what it was made for (rnnfast/torch/_cells.py):
        # a loop of steps reuses one instead of making (and leaving to the graph) one a step.
        self.cell_call: tuple[Any, Any] = (None, None)

    def stack_for(self, module: torch.nn.RNNBase, params: list[torch.Tensor]) -> Any:
        """The stack with `params` bound (again when their storage moved)."""
        keys = [(p.data_ptr(), p.shape, p.stride()) for p in params]
        moved = keys != self._keys
        if moved:  # new storage (first call, .to(), param.data = ...): check it all again
            check_params(module, params)
        # What the stack is built from, read cheaply first: building stack_spec's dictionary
        # at every call was a tenth of a small cell's step.
        mode = module.mode
        lbr = getattr(module, "linear_before_reset", True) if mode == "GRU" else True
        signature = (
            mode,
            lbr,
            module.input_size,
            module.hidden_size,
            module.num_layers,
            module.bidirectional,
            module.bias,
            module.proj_size,
            params[0].dtype,
        )
        if signature != self._signature:
            spec = stack_spec(module, params[0].dtype)
            if spec != self._spec:
                self._stack = _core.Stack(**spec)
                self._spec = spec
                moved = True
            self._signature = signature
        bound = params
        if params[0].dtype == torch.bfloat16:
            if moved:
                self._shadow = [p.detach().float() for p in params]
            else:
                for copy, p in zip(self._shadow, params):
                    copy.copy_(p.detach())
            bound = self._shadow
        if moved:
            self._stack.set_params([p.detach().numpy() for p in bound])
            self.layout, offset = [], 0
            for p in params:
                self.layout.append((offset, p.numel(), tuple(p.shape)))
                offset += p.numel()
            self._keys = keys
        return self._stack

    @property
    def spec(self) -> dict[str, Any]:
        """What the bound stack was built from (stack_spec)."""
        assert self._spec is not None, "no stack bound yet"
        return self._spec

    def new_grads(self, dtype: np.dtype) -> list[np.ndarray]:
        """Gradient arrays for the parameters, views of one allocation, not zeroed: backward
        writes them (set_grads(assign=True)). Zeroing them was a tenth of a step of a one-step
        LSTMCell call's training (H = 128, B = 1); taking them from the stack's memory pool
        (back there when torch is done with them) spares faulting in fresh pages each time, as
        much again."""
        total = self.layout[-1][0] + self.layout[-1][1]
        flat = self._stack.pooled_empty(total)
        assert flat.dtype == dtype, (flat.dtype, dtype)
        return [flat[o : o + n].reshape(shape) for o, n, shape in self.layout]

    def invalidate(self) -> None:
        """Forget the packed weights (after writes torch did not count)."""
        self._keys = []

    @contextmanager
    def bound_to(self, stack: Any, params: list[torch.Tensor]) -> Iterator[None]:
        """`stack` (a forward's) reading `params` (the tensors that forward saw) for a rerun of
        it with no packed-weight cache; the module rebinds its own at its next call. Since that
        forward, functional_call or a later step may have bound other tensors, and the rerun
        read those (the second backward of a retained graph got their gradient)."""
        stack.set_params([_f32(p) if p.dtype == torch.bfloat16 else _np(p) for p in params])
        try:
            yield
        finally:
            self._keys = []


def torch_runs_it() -> bool:
    """Whether torch's own operators must run instead of rnnfast's engine: while tracing or
    exporting (the graph records aten::lstm, ..., which every runtime knows), and inside a
    torch.func transform (grad, jacrev, jacfwd, jvp, vmap), whose wrapped tensors have no
    storage for the engine to read and whose forward-mode and batching rules rnnfast does not
    have: torch then gives its own results, or its own refusal (vmap of an LSTM). Likewise
    inside torch.autograd.forward_ad.dual_level(), where inputs or weights may carry tangents
    (forward-mode AD) that only torch's operators propagate."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return True
    if getattr(forward_ad, "_current_level", -1) >= 0:
        return True
    if torch.compiler.is_compiling():  # torch.compile keeps rnnfast's operator in its graph
        return False
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def autocast_precision() -> str:
    """ "bf16" under torch.autocast("cpu", dtype=torch.bfloat16), where torch.nn's recurrent
    modules compute their products in bfloat16 (measured: LSTM, GRU and RNN all differ from
    float32 by ~1e-3 there); else "fp32".
    """
    if not torch.is_autocast_enabled("cpu"):
        return "fp32"
    return "bf16" if torch.get_autocast_dtype("cpu") == torch.bfloat16 else "fp32"


# Which of torch.nn's modules return bfloat16 under autocast: LSTM and RNN do, GRU returns
# float32 (torch 2.13's CPU autocast lists lstm and rnn_tanh/rnn_relu, not gru; its GRU's
# matrix products are cast one by one). A projected LSTM (not oneDNN's) returns c_n float32.
AUTOCAST_BF16_OUTPUTS = ("LSTM", "RNN_TANH", "RNN_RELU")


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy()


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy()


class StackFunction(torch.autograd.Function):
    """y, h_n[, c_n] = stack(x, h0, c0, params); backward through the tape the forward made."""

    @staticmethod
    def forward(
        ctx: Any,
        engine: StackBinding,
        stack: Any,
        lstm: bool,
        x: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        lengths: np.ndarray | None,
        dropout: float,
        key: int,
        precision: str,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        y, h_n, c_n, tape = stack.forward(
            _np(x), _np(h0), _np(c0), lengths, True, engine.version, dropout, key, precision
        )
        ctx.stack, ctx.tape, ctx.engine = stack, tape, engine
        ctx.dtype = y.dtype
        ctx.param_dtype = params[0].dtype  # bfloat16 modules get bfloat16 gradients
        ctx.rerun = (lengths, dropout, key, precision)
        ctx.spec = engine.spec  # `stack`'s, for torch's operators in a create_graph backward
        ctx.full = lengths is None or bool(np.all(lengths == x.shape[0]))  # every step runs
        # Saved so that torch refuses a backward after any of them changed in place, and so that
        # a second backward (retain_graph=True) can make the spent tape again.
        ctx.save_for_backward(x, h0, c0, *params)
        ctx.set_materialize_grads(False)
        outs = (torch.from_numpy(y), torch.from_numpy(h_n))
        return (*outs, torch.from_numpy(c_n)) if lstm else outs

    @staticmethod
    def backward(ctx: Any, dy: Any, dh_n: Any, dc_n: Any = None) -> tuple[Any, ...]:
        create_graph = torch.is_grad_enabled()
        _, dropout, _, precision = ctx.rerun
        torch_has_it = ctx.spec["cell"] in TORCH_CELLS
        if create_graph and ctx.full and dropout == 0 and precision == "fp32" and torch_has_it:
            x, h0, c0, *params = ctx.saved_tensors  # (the tape stays for a first-order pass)
            need = ctx.needs_input_grad  # forward's arguments: 3 before x, 4 between c0 and params
            second = differentiable_grads(
                ctx.spec, (*need[3:6], *need[10:]), (x, h0, c0, params), (dy, dh_n, dc_n)
            )
            return (None, None, None, *second[:3], None, None, None, None, *second[3:])
        with torch.no_grad():
            grads = _backward(ctx, dy, dh_n, dc_n)
        return once_differentiable(grads, create_graph)


TORCH_CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")  # the cells torch's _VF computes


def torch_forward(spec: dict[str, Any], x: Any, h0: Any, c0: Any, params: list[Any]) -> tuple:
    """(y, h_n[, c_n]) of a time-major stack computed by torch's own operators (_VF, as
    torch.nn's forward calls them), differentiable to any order; no dropout."""
    cell, layers, bidir = spec["cell"], spec["num_layers"], spec["bidirectional"]
    dirs, batch = 2 if bidir else 1, x.shape[1]
    out = spec["proj_size"] or spec["hidden_size"]
    if h0 is None:
        h0 = x.new_zeros(layers * dirs, batch, out)
    args = (params, spec["bias"], layers, 0.0, False, bidir, False)
    if cell == "lstm":
        if c0 is None:
            c0 = x.new_zeros(layers * dirs, batch, spec["hidden_size"])
        return tuple(torch._VF.lstm(x, (h0, c0), *args))
    return tuple(getattr(torch._VF, cell)(x, h0, *args))


def differentiable_grads(
    spec: dict[str, Any],
    need: tuple[bool, ...],
    inputs: tuple[Any, Any, Any, list[Any]],
    grad_outputs: tuple[Any, ...],
    reshape: Any = None,
) -> list[Any]:
    """Gradients for (x, h0, c0, *params) with a graph of their own (create_graph=True: a
    gradient penalty, a Hessian-vector product), from torch's operators run again on the
    tensors the forward saw: the engine's backward is not itself differentiable. `reshape`
    maps the inputs to a time-major stack's and its outputs back (the cells')."""
    x, h0, c0, params = inputs
    tensors = (x, h0, c0, *params)
    wanted = [i for i, (t, n) in enumerate(zip(tensors, need)) if n and t is not None]
    grads: list[Any] = [None] * min(len(tensors), len(need))
    with torch.enable_grad():
        args = reshape.inputs(x, h0, c0) if reshape else (x, h0, c0)
        outs = torch_forward(spec, args[0], args[1], args[2], list(params))
        outs = reshape.outputs(outs) if reshape else outs
        pairs = [(o, g) for o, g in zip(outs, grad_outputs) if g is not None]
        if pairs and wanted:
            got = torch.autograd.grad(
                [o for o, _ in pairs],
                [tensors[i] for i in wanted],
                [g for _, g in pairs],
                create_graph=True,
                allow_unused=True,
            )
            for i, g in zip(wanted, got):
                grads[i] = g
    return grads


def once_differentiable(grads: tuple[Any, ...], create_graph: bool) -> tuple[Any, ...]:
    """A backward's gradients as they are, or, when a graph of them was asked for
    (create_graph=True) where torch cannot recompute the forward (dropout, packed lengths,
    bf16, a GRU torch lacks), wrapped so that differentiating them again fails loudly rather
    than giving zero."""
    if not create_graph:
        return grads
    fail = torch._C._functions.DelayedError(_NO_DOUBLE_BACKWARD, len(grads))
    return fail(*[_fake_requires_grad(g) for g in grads])


_NO_DOUBLE_BACKWARD = (
    b"rnnfast.torch: double backward is not supported here (dropout in training, variable "
    b"lengths, bf16 or a GRU with linear_before_reset=False: torch cannot recompute that "
    b"forward); use torch.nn's module for second derivatives"
)


def _fake_requires_grad(t: Any) -> Any:
    if t is None:
        return None
    t = t.detach()
    t.requires_grad = True
    return t


def _backward(ctx: Any, dy: Any, dh_n: Any, dc_n: Any) -> tuple[Any, ...]:
    """The gradients of StackFunction.backward: (None for the non-tensors, dx, dh0, dc0, ...,
    the parameter gradients)."""
    x, h0, c0, *params = ctx.saved_tensors  # raises if any changed in place since forward
    tape = ctx.tape
    if tape is None:  # a second backward through a retained graph: the same forward again
        lengths, dropout, key, precision = ctx.rerun
        with ctx.engine.lock, ctx.engine.bound_to(ctx.stack, params):
            _, _, _, tape = ctx.stack.forward(
                _np(x), _np(h0), _np(c0), lengths, True, -1, dropout, key, precision
            )
    ctx.tape = None
    grads = ctx.engine.new_grads(ctx.dtype)
    need_x = ctx.needs_input_grad[3]
    with ctx.engine.lock:
        ctx.stack.set_grads(grads, assign=True)
        dx, dh0, dc0 = ctx.stack.backward(
            tape,
            _contiguous(dy),
            _contiguous(dh_n),
            _contiguous(dc_n),
            need_x,
            False,
            -1,  # the tape's own packs: nothing to compare (module doc)
        )
    need = ctx.needs_input_grad
    out_dx = torch.from_numpy(dx) if dx is not None else None
    out_dh0 = torch.from_numpy(dh0) if need[4] else None
    out_dc0 = torch.from_numpy(dc0) if dc0 is not None and need[5] else None
    out_grads = param_grads(grads, ctx.param_dtype)
    return (None, None, None, out_dx, out_dh0, out_dc0, None, None, None, None, *out_grads)


def param_grads(grads: list[np.ndarray], dtype: torch.dtype) -> list[torch.Tensor]:
    """The parameters' gradients as tensors of their dtype (bfloat16 modules get bfloat16)."""
    out = [torch.from_numpy(g) for g in grads]
    return out if out[0].dtype == dtype else [g.to(dtype) for g in out]


def _contiguous(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.contiguous().numpy()
