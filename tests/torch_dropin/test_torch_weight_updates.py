"""The ways third-party training code changes a torch model's weights, on a patched model and on
torch.nn side by side: every route must reach rnnfast's next forward and backward.

The routes are those of widely copied code: the manual update loop of PyTorch's word-level
language-model example (`p.data.add_(p.grad, alpha=-lr)`), weight decay through `p.data`,
exponential moving averages and torch.optim.swa_utils.AveragedModel, model averaging with
`p.data.copy_`, `.detach()` and NumPy views, `vector_to_parameters`, `load_state_dict`,
`param.data = ...`, `.to()`, torch.optim with its foreach and fused kernels, gradient
accumulation and `clip_grad_norm_`. Each runs several training steps and compares the losses of
every step (and the final weights) with torch.nn's.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")
from torch.nn.utils import parameters_to_vector, vector_to_parameters  # noqa: E402

STEPS = 4
LR = 0.3
TOL = 1e-9  # float64: both engines agree to rounding


class Model(torch.nn.Module):
    """An LSTM language-model shape: recurrent stack, then a linear read-out."""

    def __init__(self, lstm: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = lstm
        self.out = torch.nn.Linear(6, 3, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.out(y)


def _pair(cls: str = "LSTM", **kw):
    torch.manual_seed(0)
    native = Model(getattr(torch.nn, cls)(4, 6, num_layers=2, dtype=torch.float64, **kw))
    ours = Model(getattr(rt, cls)(4, 6, num_layers=2, dtype=torch.float64, **kw))
    ours.load_state_dict(native.state_dict())
    return native, ours


def _data(step: int):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    target = torch.randn(7, 3, 3, generator=g, dtype=torch.float64)
    return x, target


def _loss(model, step: int) -> torch.Tensor:
    x, target = _data(step)
    return ((model(x) - target) ** 2).mean()


def _train(model, update, steps: int = STEPS) -> list[float]:
    """Losses of `steps` steps of forward, backward and `update(model, step)`."""
    losses = []
    for step in range(steps):
        model.zero_grad()
        loss = _loss(model, step)
        loss.backward()
        losses.append(loss.item())
        update(model, step)
    with torch.no_grad():
        losses.append(float(_loss(model, steps)))  # after the last update, inference
    return losses


def _same_run(update, cls: str = "LSTM", **kw) -> None:
    native, ours = _pair(cls, **kw)
    want = _train(native, update)
    got = _train(ours, update)
    assert np.allclose(got, want, rtol=TOL, atol=0), f"losses {got} != torch.nn's {want}"
    assert len(set(want)) > 1, "the update changed nothing: the test would prove nothing"
    for (name, a), b in zip(ours.named_parameters(), native.parameters()):
        assert torch.allclose(a, b, rtol=TOL, atol=1e-12), name


def sgd_through_data(model, step):  # PyTorch's word_language_model/main.py
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-LR)


def decay_through_data(model, step):
    sgd_through_data(model, step)
    for p in model.parameters():
        p.data.mul_(0.9)


def copy_through_data(model, step):  # model averaging: the average written back with copy_
    avg = [p.detach().clone() - LR * p.grad for p in model.parameters()]
    for p, a in zip(model.parameters(), avg):
        p.data.copy_(a)


def detach_view(model, step):
    for p in model.parameters():
        p.detach().sub_(LR * p.grad)


def numpy_view(model, step):
    for p in model.parameters():
        p.detach().numpy()[...] -= LR * p.grad.numpy()


def vector_route(model, step):
    params = list(model.parameters())
    vec = parameters_to_vector(params) - LR * parameters_to_vector([p.grad for p in params])
    vector_to_parameters(vec, params)


def state_dict_route(model, step):
    state = {k: v - LR * 0.1 * (step + 1) for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def assign_data(model, step):  # new storage for every parameter
    for p in model.parameters():
        p.data = p.data - LR * p.grad


def no_grad_inplace(model, step):  # what torch.optim does (moves torch's version counter)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-LR)


ROUTES = [
    sgd_through_data,
    decay_through_data,
    copy_through_data,
    detach_view,
    numpy_view,
    vector_route,
    state_dict_route,
    assign_data,
    no_grad_inplace,
]


@pytest.mark.parametrize("update", ROUTES, ids=lambda f: f.__name__)
def test_every_route_reaches_the_next_forward_and_backward(update):
    _same_run(update)


@pytest.mark.parametrize("cls", ["RNN", "GRU"])
def test_data_updates_reach_every_cell(cls):
    _same_run(sgd_through_data, cls)


@pytest.mark.parametrize(
    "opt",
    [
        ("SGD", {"lr": LR, "momentum": 0.9, "foreach": False}),
        ("SGD", {"lr": LR, "momentum": 0.9, "foreach": True}),
        ("Adam", {"lr": 0.05, "foreach": False}),
        ("Adam", {"lr": 0.05, "foreach": True}),
        ("Adam", {"lr": 0.05, "fused": True}),
        ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "fused": True}),
        ("RMSprop", {"lr": 0.01, "foreach": True}),
        ("Adagrad", {"lr": 0.1}),  # min-char-rnn's optimiser
    ],
    ids=lambda o: f"{o[0]}-{'-'.join(k for k in o[1] if k in ('foreach', 'fused'))}",
)
def test_torch_optimisers(opt):
    name, kw = opt
    optimisers = {}

    def update(model, step):
        if id(model) not in optimisers:
            optimisers[id(model)] = getattr(torch.optim, name)(model.parameters(), **kw)
        optimisers[id(model)].step()

    _same_run(update)


def test_gradient_accumulation_and_clipping():
    def run(model):
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        losses = []
        for step in range(STEPS):
            for micro in range(3):  # three micro-batches, one update
                loss = _loss(model, 10 * step + micro) / 3
                loss.backward()
                losses.append(loss.item())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            opt.zero_grad()
        return losses

    native, ours = _pair()
    assert np.allclose(run(ours), run(native), rtol=TOL, atol=0)


def _averaged_outputs(model, make_average, update) -> list:
    """The outputs of an averaged copy of `model` after each of STEPS SGD steps of it."""
    average = make_average(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    outs = []
    for step in range(STEPS):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
        with torch.no_grad():
            update(average, model)
            outs.append(average(_data(step)[0]))
    return outs


def _same_averages(make_average, update) -> None:
    native, ours = _pair()
    got = _averaged_outputs(ours, make_average, update)
    want = _averaged_outputs(native, make_average, update)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=TOL, atol=1e-12)


def test_ema_of_a_patched_model():
    """An EMA copy updated through .data (timm's ModelEmaV2 way) gives torch.nn's EMA outputs."""

    def ema_update(ema, model):
        for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
            e.data.mul_(0.8).add_(p.data, alpha=0.2)

    _same_averages(copy.deepcopy, ema_update)


def test_swa_averaged_model():
    from torch.optim.swa_utils import AveragedModel

    _same_averages(AveragedModel, lambda swa, model: swa.update_parameters(model))


def test_state_dict_round_trip_between_models():
    native, ours = _pair()
    _train(native, sgd_through_data, 2)
    ours.load_state_dict(native.state_dict())
    x = _data(0)[0]
    assert torch.allclose(ours(x), native(x), rtol=TOL, atol=1e-12)
    native.load_state_dict(copy.deepcopy(ours.state_dict()))
    assert torch.allclose(ours(x), native(x), rtol=TOL, atol=1e-12)


def test_to_another_dtype_and_back():
    torch.manual_seed(0)
    native = torch.nn.LSTM(4, 6)
    ours = rt.LSTM(4, 6)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(5, 2, 4)
    ours(x)
    native, ours = native.double(), ours.double()
    for m in (native, ours):
        for p in m.parameters():
            p.data.mul_(0.5)
    got, want = ours(x.double())[0], native(x.double())[0]
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)
    native, ours = native.float(), ours.float()
    assert torch.allclose(ours(x)[0], native(x)[0], rtol=1e-5, atol=1e-6)


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.rnn.parameters()]


@pytest.mark.parametrize("earlier_backward", [False, True])
def test_a_write_between_forward_and_backward_gives_the_forwards_gradient(earlier_backward):
    """A write torch does not count (through .data) between forward and backward: torch.nn mixes
    the old and new weights in its gradient; rnnfast gives the gradient of the forward that ran
    (its tape holds the packs of those weights), whether or not an earlier backward ran with
    the same weights. The oracle is torch.nn, never written to, at the forward's weights."""
    native, ours = _pair()
    if earlier_backward:
        _loss(ours, 1).backward()
        ours.zero_grad()
    loss = _loss(ours, 0)
    for p in ours.rnn.parameters():
        p.data.mul_(0.5)
    loss.backward()
    _loss(native, 0).backward()
    for got, want in zip(_grads(ours), _grads(native)):
        assert torch.allclose(got, want, rtol=TOL, atol=1e-12)
    with torch.no_grad():  # and the next forward sees the write
        native.rnn.load_state_dict(ours.rnn.state_dict())
        assert torch.allclose(ours(_data(2)[0]), native(_data(2)[0]), rtol=TOL, atol=1e-12)


def test_a_cell_loop_gets_the_forwards_gradient_after_a_write():
    torch.manual_seed(0)
    native = torch.nn.LSTMCell(4, 5, dtype=torch.float64)
    ours = rt.LSTMCell(4, 5, dtype=torch.float64)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(6, 2, 4, dtype=torch.float64)

    def run(cell):
        hx = None
        for t in range(x.shape[0]):
            hx = cell(x[t], hx)
        return hx[0].square().sum()

    loss = run(ours)
    ours.weight_hh.data.add_(1.0)
    loss.backward()
    run(native).backward()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        got, want = getattr(ours, name).grad, getattr(native, name).grad
        assert torch.allclose(got, want, rtol=TOL, atol=1e-12), name
