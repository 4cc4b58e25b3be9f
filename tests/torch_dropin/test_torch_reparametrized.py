"""Weights a patched module does not own as plain Parameters, as third-party code hands them:
torch.func.functional_call (meta-learning loops, model ensembles), torch.nn.utils'
parametrizations (weight_norm, spectral_norm, orthogonal: the notes' orthogonal recurrent
weights kept orthogonal while training) and pruning's forward pre-hook. torch.nn recomputes
such weights at every call; a module that kept the tensors it first saw ran the old values and
gave the new ones no gradient, with no error. Each case runs torch.nn and the patched copy side
by side, in float64.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")
from torch.nn.utils import parametrizations, prune  # noqa: E402

TOL = 1e-9  # float64: both engines agree to rounding
STEPS = 3
MODULES = {
    "lstm": lambda: torch.nn.LSTM(5, 4, num_layers=2, dtype=torch.float64),
    "gru": lambda: torch.nn.GRU(5, 4, bidirectional=True, dtype=torch.float64),
    "rnn": lambda: torch.nn.RNN(5, 4, nonlinearity="relu", dtype=torch.float64),
    "lstm_cell": lambda: torch.nn.LSTMCell(5, 4, dtype=torch.float64),
    "gru_cell": lambda: torch.nn.GRUCell(5, 4, dtype=torch.float64),
}


def _twins(kind: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    ref = MODULES[kind]()
    return ref, rt.patch(copy.deepcopy(ref))


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(3, 4, generator=g, dtype=torch.float64)


def _loss(
    kind: str, module: torch.nn.Module, call: Callable[..., Any] | None = None
) -> torch.Tensor:
    """A loss on every output a user reads; cells run one step from a non-zero state, so that
    W_hh gets a gradient. `call(module, args)` runs the module (default: module(*args))."""
    x, h = _inputs()
    call = call or (lambda m, args: m(*args))
    if not kind.endswith("_cell"):
        out = call(module, (x,))[0]
    else:
        hx = (h, h) if kind == "lstm_cell" else h
        out = call(module, (x[0], hx))
        out = out[0] if isinstance(out, tuple) else out
    return (out * out).sum()


def _recurrent_weight(kind: str) -> str:
    return "weight_hh" if kind.endswith("_cell") else "weight_hh_l0"


@pytest.mark.parametrize("kind", MODULES)
def test_functional_call_runs_the_tensors_it_is_given(kind):
    """Outputs from the given tensors and gradients to them, as torch.nn's; a patched LSTM
    ran its own weights instead and left the given ones without gradient."""
    ref, pat = _twins(kind)
    g = torch.Generator().manual_seed(2)
    given = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in ref.named_parameters()}
    losses, grads = [], []
    for module in (ref, pat):
        params = {n: t.clone().requires_grad_() for n, t in given.items()}
        loss = _loss(kind, module, lambda m, args, p=params: torch.func.functional_call(m, p, args))
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in params.items()})
    assert abs(losses[0] - _loss(kind, ref).item()) > 1e-3  # the given tensors matter here
    assert losses[1] == pytest.approx(losses[0], rel=TOL)
    for name, want in grads[0].items():
        assert grads[1][name] is not None, name
        torch.testing.assert_close(grads[1][name], want, rtol=TOL, atol=TOL)
    assert all(p.grad is None for p in pat.parameters())  # the module's own: untouched
    assert _loss(kind, pat).item() == pytest.approx(
        _loss(kind, ref).item(), rel=TOL
    )  # and still its own


@pytest.mark.parametrize("kind", MODULES)
def test_a_second_order_maml_step_as_torchs(kind):
    """MAML: gradients of the task loss with create_graph=True, one SGD step on them through
    functional_call, and the meta-gradient of the query loss back through that step: the inner
    gradients and the meta-gradients equal torch.nn's."""
    ref, pat = _twins(kind)
    inner, meta = [], []
    for module in (ref, pat):
        params = {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}
        call = lambda m, args, p=params: torch.func.functional_call(m, p, args)  # noqa: E731
        grads = torch.autograd.grad(
            _loss(kind, module, call), list(params.values()), create_graph=True
        )
        fast = {n: p - 0.1 * g for (n, p), g in zip(params.items(), grads)}
        query = _loss(kind, module, lambda m, args, f=fast: torch.func.functional_call(m, f, args))
        query.backward()
        inner.append(grads)
        meta.append([p.grad for p in params.values()])
    for got, want in zip(inner[1] + tuple(meta[1]), inner[0] + tuple(meta[0])):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", MODULES)
def test_a_retained_graphs_second_backward_uses_its_own_forwards_weights(kind):
    """backward(retain_graph=True), then a forward on other tensors (functional_call), then the
    retained graph's second backward: the same gradients as the first, as torch's; the rerun of
    that forward read the tensors bound last, and gave their gradients."""
    ref, pat = _twins(kind)
    g = torch.Generator().manual_seed(4)
    other = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in ref.named_parameters()}
    for module in (ref, pat):
        loss = _loss(kind, module)
        loss.backward(retain_graph=True)
        first = [p.grad.clone() for p in module.parameters()]
        module.zero_grad()
        _loss(kind, module, lambda m, args: torch.func.functional_call(m, other, args))
        loss.backward()
        for p, want in zip(module.parameters(), first):
            torch.testing.assert_close(p.grad, want, rtol=TOL, atol=TOL)


REPARAMETRIZE = {
    "weight_norm": lambda m, name: parametrizations.weight_norm(m, name),
    "spectral_norm": lambda m, name: parametrizations.spectral_norm(m, name),
    "orthogonal": lambda m, name: parametrizations.orthogonal(m, name),
    "pruned": lambda m, name: prune.l1_unstructured(m, name, amount=0.4),
}


@pytest.mark.parametrize("how", REPARAMETRIZE)
@pytest.mark.parametrize("kind", MODULES)
def test_reparametrized_recurrent_weights_train_as_torchs(kind, how):
    """W_hh computed by a parametrization (or pruning's mask) at every call: the same losses
    step after step and the same trained originals as torch.nn's."""
    ref, pat = _twins(kind)
    for module in (ref, pat):
        torch.manual_seed(3)  # spectral_norm starts its power iteration from random vectors
        REPARAMETRIZE[how](module, _recurrent_weight(kind))
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (ref, pat)]
    for _ in range(STEPS):
        losses = []
        for module, opt in zip((ref, pat), opts):
            opt.zero_grad()
            loss = _loss(kind, module)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=TOL)
    for (name, want), (_, got) in zip(ref.named_parameters(), pat.named_parameters()):
        torch.testing.assert_close(got, want, rtol=TOL, atol=TOL, msg=name)


def _transforms(kind: str) -> dict[str, Callable[[torch.nn.Module], Any]]:
    """torch.func's transforms as meta-learning and sensitivity code applies them: over the
    parameters through functional_call, or over the input."""
    x = _inputs()[0]

    def out(module: torch.nn.Module, params: dict, inp: torch.Tensor) -> torch.Tensor:
        args = (inp,) if not kind.endswith("_cell") else (inp, None)
        res = torch.func.functional_call(module, params, args)
        return res[0] if isinstance(res, tuple) else res

    inp = x[:, :2] if not kind.endswith("_cell") else x[0, :2]
    own = lambda m: dict(m.named_parameters())  # noqa: E731
    return {
        "grad": lambda m: torch.func.grad(lambda p: out(m, p, inp).square().sum())(own(m)),
        "jacrev": lambda m: torch.func.jacrev(lambda i: out(m, own(m), i))(inp),
        "jacfwd": lambda m: torch.func.jacfwd(lambda i: out(m, own(m), i))(inp),
        "jvp": lambda m: torch.func.jvp(lambda i: out(m, own(m), i), (inp,), (inp.cos(),))[1],
        "vmap": lambda m: torch.func.vmap(lambda i: out(m, own(m), i))(torch.stack([inp, -inp])),
    }


# torch's own warnings inside its transforms (its scripted helpers, a batching fallback).
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize("transform", ["grad", "jacrev", "jacfwd", "jvp", "vmap"])
@pytest.mark.parametrize("kind", MODULES)
def test_torch_func_transforms_behave_as_on_torch_nn(kind, transform):
    """Inside a transform the tensors are torch.func's wrappers, without storage for the engine:
    torch's own operators run there, so the results are torch.nn's exactly, and what torch
    refuses (vmap of an LSTM, having no batching rule) is refused with torch's error. Before,
    every transform failed with "Cannot access data pointer of Tensor that doesn't have
    storage" or a demand for setup_context."""
    ref, pat = _twins(kind)
    run = _transforms(kind)[transform]
    try:
        want = run(ref)
    except RuntimeError as torch_error:
        with pytest.raises(RuntimeError) as ours:
            run(pat)
        assert str(ours.value) == str(torch_error)
        return
    got = run(pat)
    pairs = [(got[k], want[k]) for k in want] if isinstance(want, dict) else [(got, want)]
    for g, w in pairs:
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("tangent_on", ["input", "weight"])
@pytest.mark.parametrize("kind", MODULES)
def test_forward_mode_ad_behaves_as_on_torch_nn(kind, tangent_on):
    """torch.autograd.forward_ad (dual tensors: jvp-based sensitivities, forward-mode Hessian
    products): a tangent on the input or on W_hh reaches the output's tangent as on torch.nn.
    Before, a patched module raised "You must implement the jvp function" there."""
    import torch.autograd.forward_ad as fwad

    ref, pat = _twins(kind)
    results = []
    for module in (ref, pat):
        weight = _recurrent_weight(kind)
        with fwad.dual_level():
            x, h = _inputs()
            if tangent_on == "input":
                x = fwad.make_dual(x, x.sin())
                params = dict(module.named_parameters())
            else:
                w = getattr(module, weight)
                params = {**dict(module.named_parameters()), weight: fwad.make_dual(w, w.cos())}
            args = (
                (x,) if not kind.endswith("_cell") else (x[0], (h, h) if kind == "lstm_cell" else h)
            )
            out = torch.func.functional_call(module, params, args)
            out = out[0] if isinstance(out, tuple) else out
            primal, tangent = fwad.unpack_dual(out)
            assert tangent is not None
            results.append((primal.detach().clone(), tangent.clone()))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # outside the dual level the engine runs again
    assert not rt._engine.torch_runs_it()


@pytest.mark.parametrize("kind", MODULES)
def test_a_parametrization_runs_once_a_call_without_autograd(kind):
    """spectral_norm in training mode steps its power iteration each time its weight is read,
    under no_grad too: the patched module reads it once a call, as torch.nn, so that the
    outputs and the iteration's vectors stay the same call after call."""
    ref, pat = _twins(kind)
    for module in (ref, pat):
        torch.manual_seed(3)
        parametrizations.spectral_norm(module, _recurrent_weight(kind))
    with torch.no_grad():
        for _ in range(STEPS):
            losses = [_loss(kind, module).item() for module in (ref, pat)]
            assert losses[1] == pytest.approx(losses[0], rel=TOL)
    for (name, want), (_, got) in zip(ref.named_buffers(), pat.named_buffers()):
        torch.testing.assert_close(got, want, rtol=TOL, atol=TOL, msg=name)
