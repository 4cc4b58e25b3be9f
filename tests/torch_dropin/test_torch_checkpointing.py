"""Activation checkpointing (torch.utils.checkpoint, both its reentrant and its non-reentrant
form) around rnnfast.torch's modules and cell loops, as memory-bound training scripts wrap
their recurrent blocks: the forward runs first without autograd, then again during backward.
Gradients of the weights and of the input against torch.nn's under the same checkpointing."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")
checkpoint = pytest.importorskip("torch.utils.checkpoint").checkpoint

CELLS = {
    "lstm": (torch.nn.LSTMCell, rt.LSTMCell),
    "gru": (torch.nn.GRUCell, rt.GRUCell),
    "rnn": (torch.nn.RNNCell, rt.RNNCell),
}
MODULES = {
    "lstm": (torch.nn.LSTM, rt.LSTM),
    "gru": (torch.nn.GRU, rt.GRU),
    "rnn": (torch.nn.RNN, rt.RNN),
}
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _twins(native_cls, ours_cls, *args, **kwargs):
    torch.manual_seed(0)
    native = native_cls(*args, dtype=torch.float64, **kwargs)
    ours = ours_cls(*args, dtype=torch.float64, **kwargs)
    ours.load_state_dict(native.state_dict())
    return native, ours


def _cell_chunks(cell, x, reentrant: bool):
    """Four-step chunks of a cell loop, each checkpointed, the state carried between them."""

    def chunk(xs, *hx):
        h = hx if len(hx) == 2 else (hx[0] if hx else None)
        for t in range(xs.shape[0]):
            h = cell(xs[t], h)
        return h if isinstance(h, tuple) else (h,)

    hx: tuple = ()
    for k in range(0, x.shape[0], 4):
        hx = checkpoint(chunk, x[k : k + 4], *hx, use_reentrant=reentrant)
    return hx[0].square().sum()


def _module_block(module, x, reentrant: bool):
    y = checkpoint(lambda inp: module(inp)[0], x, use_reentrant=reentrant)
    return y.square().sum()


def _compare(native, ours, run, reentrant: bool):
    x = torch.randn(8, 3, 6, dtype=torch.float64)
    grads = []
    for module in (native, ours):
        inp = x.clone().requires_grad_()  # the reentrant form needs an input that does
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own notes on the reentrant form
            run(module, inp, reentrant).backward()
        grads.append([inp.grad] + [p.grad for p in module.parameters()])
    for got, want in zip(grads[1], grads[0]):
        assert got is not None and want is not None
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("kind", list(CELLS))
def test_a_checkpointed_cell_loop_gets_torchs_gradients(kind, reentrant):
    native, ours = _twins(*CELLS[kind], 6, 5)
    _compare(native, ours, _cell_chunks, reentrant)


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("kind", list(MODULES))
def test_a_checkpointed_module_gets_torchs_gradients(kind, reentrant):
    native, ours = _twins(*MODULES[kind], 6, 5, num_layers=2)
    _compare(native, ours, _module_block, reentrant)
