"""The stack as torch custom operators (torch.library), for torch.compile.

A compiled graph cannot carry the engine's C++ tape from forward to backward, so `stack_backward`
runs the training forward again (bitwise the same: the masks come from the same key) and then
backward: an extra forward per step, the price of a graph with no Python objects in it. Eager
mode uses the tape (`_engine.StackFunction`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import _core
from ._engine import SUPPORTED_DTYPES, follow_torch_threads


def _stack(x: Tensor, params: list[Tensor], cfg: tuple) -> Any:
    """A stack of x's dtype (float32 for a bfloat16 module: x comes converted) bound to the
    parameters (as float32 copies when they are bfloat16)."""
    follow_torch_threads()
    cell, hidden, layers, bidirectional, bias, proj = cfg
    stack = _core.Stack(
        cell=cell,
        input_size=x.shape[2],
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        bias=bias,
        dtype=SUPPORTED_DTYPES[x.dtype],
        proj_size=proj,
    )
    stack.set_params([_as_engine(p).contiguous().numpy() for p in params])
    return stack


def _as_engine(p: Tensor) -> Tensor:
    """A parameter in the engine's dtype: bfloat16 as a float32 copy, the others as they are."""
    return p.detach().float() if p.dtype == torch.bfloat16 else p.detach()


def _np(t: Tensor | None) -> Any:
    return None if t is None else t.detach().contiguous().numpy()


def _run_forward(
    stack: Any,
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    lengths: Tensor | None,
    training: bool,
    dropout: float,
    key: Tensor,
    precision: str,
) -> Any:
    return stack.forward(
        _np(x), _np(h0), _np(c0), _np(lengths), training, -1, dropout, int(key.item()), precision
    )


@torch.library.custom_op("rnnfast::stack_forward", mutates_args=())
def stack_forward(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    lengths: Tensor | None,
    params: list[Tensor],
    cell: str,
    hidden: int,
    layers: int,
    bidirectional: bool,
    bias: bool,
    proj: int,
    dropout: float,
    key: Tensor,
    precision: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """y, h_n, c_n (empty but for LSTM) of the whole stack; precision "fp32" or "bf16" (the
    products, rnnfast.RNN's `precision`)."""
    stack = _stack(x, params, (cell, hidden, layers, bidirectional, bias, proj))
    y, h_n, c_n, _ = _run_forward(stack, x, h0, c0, lengths, False, dropout, key, precision)
    c_out = torch.from_numpy(c_n) if c_n is not None else x.new_empty(0)
    return torch.from_numpy(y), torch.from_numpy(h_n), c_out


@stack_forward.register_fake
def _(  # type: ignore[no-untyped-def]  # the custom op's signature, above
    x, h0, c0, lengths, params, cell, hidden, layers, bidirectional, bias, proj, dropout, key, prec
):
    steps, batch = x.shape[0], x.shape[1]
    dirs, width = 2 if bidirectional else 1, proj or hidden
    c_n = x.new_empty(layers * dirs, batch, hidden) if cell == "lstm" else x.new_empty(0)
    return (
        x.new_empty(steps, batch, dirs * width),
        x.new_empty(layers * dirs, batch, width),
        c_n,
    )


@torch.library.custom_op("rnnfast::stack_backward", mutates_args=())
def stack_backward(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    lengths: Tensor | None,
    params: list[Tensor],
    dy: Tensor | None,
    dh_n: Tensor | None,
    dc_n: Tensor | None,
    cell: str,
    hidden: int,
    layers: int,
    bidirectional: bool,
    bias: bool,
    proj: int,
    dropout: float,
    key: Tensor,
    precision: str,
) -> list[Tensor]:
    """[dx, dh0, dc0 (empty but for LSTM), *parameter gradients]: the training forward again,
    then backward."""
    stack = _stack(x, params, (cell, hidden, layers, bidirectional, bias, proj))
    _, _, _, tape = _run_forward(stack, x, h0, c0, lengths, True, dropout, key, precision)
    grads = [torch.empty(p.shape, dtype=x.dtype) for p in params]
    stack.set_grads([g.numpy() for g in grads], assign=True)
    dx, dh0, dc0 = stack.backward(tape, _np(dy), _np(dh_n), _np(dc_n), True)
    dc0_t = torch.from_numpy(dc0) if dc0 is not None else x.new_empty(0)
    out = [g.to(p.dtype) for g, p in zip(grads, params)]
    return [torch.from_numpy(dx), torch.from_numpy(dh0), dc0_t, *out]


@stack_backward.register_fake
def _(  # type: ignore[no-untyped-def]  # the custom op's signature, above
    x, h0, c0, lengths, params, dy, dh_n, dc_n, cell, hidden, layers, bidirectional, *rest
):
    dirs, width = 2 if bidirectional else 1, rest[1] or hidden
    batch = x.shape[1]
    dc0 = x.new_empty(layers * dirs, batch, hidden) if cell == "lstm" else x.new_empty(0)
    return [
        torch.empty_like(x),
        x.new_empty(layers * dirs, batch, width),
        dc0,
        *[torch.empty_like(p) for p in params],
    ]


def _setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
    x, h0, c0, lengths, params, *cfg = inputs
    ctx.save_for_backward(x, h0, c0, lengths, *params)
    ctx.cfg = cfg
    ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None


def _backward(ctx: Any, dy: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None) -> tuple:
    x, h0, c0, lengths, *params = ctx.saved_tensors
    cell = ctx.cfg[0]
    out = stack_backward(
        x, h0, c0, lengths, params, dy, dh_n, dc_n if cell == "lstm" else None, *ctx.cfg
    )
    dx, dh0, dc0, *grads = out
    return (
        dx,
        dh0 if ctx.has_h0 else None,
        dc0 if ctx.has_c0 else None,
        None,
        grads,
        *([None] * len(ctx.cfg)),
    )


torch.library.register_autograd("rnnfast::stack_forward", _backward, setup_context=_setup_context)
