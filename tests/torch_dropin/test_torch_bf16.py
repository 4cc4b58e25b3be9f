"""rnnfast.torch in bfloat16 as PyTorch users get it: under torch.autocast("cpu",
dtype=torch.bfloat16) (products in bf16, precision "bf16"; the output dtypes torch.nn gives
there: LSTM and RNN bfloat16, GRU float32; float32 gradients) and as modules and inputs in
torch.bfloat16 (everything bfloat16, as torch's); within the bf16 error bound of a float64
torch.nn module; and nothing changed outside autocast."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")

U = 2.0**-8  # bfloat16's unit roundoff; the bound of tests/engine/test_bf16.py
NORM_BOUND = 4 * U

MODULES = [
    ("LSTM", {}),
    ("LSTM", {"proj_size": 5}),
    ("GRU", {}),
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu"}),
]
IDS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def _pair(name, kw, **extra):
    torch.manual_seed(0)
    ours = getattr(rt, name)(12, 20, **kw, **extra)
    theirs = getattr(torch.nn, name)(12, 20, **kw, **extra)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _flat(out):
    y, state = out
    return [y, *(state if isinstance(state, tuple) else (state,))]


# torch's own LSTM with a projection warns that oneDNN lacks it (and runs without it).
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_autocast_matches_torch_dtypes_and_float64_values(name, kw, bidirectional):
    ours, theirs = _pair(name, kw, num_layers=2, bidirectional=bidirectional)
    exact = getattr(torch.nn, name)(12, 20, num_layers=2, bidirectional=bidirectional, **kw)
    exact.load_state_dict(theirs.state_dict())
    exact.double()
    x = torch.randn(9, 4, 12)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = _flat(ours(x_ours)), _flat(theirs(x_theirs))
    x_exact = x.double().requires_grad_()
    ref = _flat(exact(x_exact))
    for i, (g, w, r) in enumerate(zip(got, want, ref)):
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype)
        assert _rel(g, r) <= NORM_BOUND, (i, _rel(g, r))
    weights = torch.randn(got[0].shape, dtype=torch.float64)
    (got[0].double() * weights).sum().backward()
    (ref[0] * weights).sum().backward()
    assert x_ours.grad.dtype == torch.float32
    grads = [(x_ours.grad, x_exact.grad)]
    grads += [(p.grad, q.grad) for p, q in zip(ours.parameters(), exact.parameters())]
    bound = 0.25 if kw.get("nonlinearity") == "relu" else NORM_BOUND  # see test_bf16.py
    for g, r in grads:
        assert g.dtype == torch.float32
        assert _rel(g, r) <= bound, _rel(g, r)


def test_autocast_really_computes_in_bf16():
    ours, _ = _pair("LSTM", {})
    x = torch.randn(9, 4, 12)
    with torch.no_grad():
        y32, _ = ours(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16, _ = ours(x)
    assert U / 16 < _rel(y16.float(), y32) < NORM_BOUND


def test_outside_autocast_nothing_changes():
    ours, _ = _pair("GRU", {})
    fresh, _ = _pair("GRU", {})
    x = torch.randn(6, 3, 12)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours(x)
        assert torch.equal(ours(x)[0], fresh(x)[0])


def test_autocast_takes_bfloat16_inputs_and_states_as_torch_does():
    ours, theirs = _pair("LSTM", {})
    x = torch.randn(5, 3, 12).to(torch.bfloat16)
    hx = (torch.zeros(1, 3, 20, dtype=torch.bfloat16), torch.ones(1, 3, 20, dtype=torch.bfloat16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = _flat(ours(x, hx)), _flat(theirs(x, hx))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == torch.bfloat16
        assert _rel(g, w) <= 2 * NORM_BOUND


def test_autocast_training_loop_with_optimizer_steps():
    """A bf16 training script's loop: autocast forward, float32 loss, backward, Adam; the loss
    falls as torch.nn's does under the same loop."""
    losses = {}
    x = torch.randn(20, 8, 12)
    target = torch.cumsum(x[..., :1], 0) / 4
    for lib in ("torch", "rnnfast"):
        torch.manual_seed(1)
        rnn = (torch.nn if lib == "torch" else rt).LSTM(12, 20)
        head = torch.nn.Linear(20, 1)
        opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.02)
        for _ in range(60):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y, _ = rnn(x)
                loss = ((head(y).float() - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[lib] = loss.item()
    assert losses["rnnfast"] <= 1.25 * losses["torch"] + 1e-3, losses


def test_autocast_under_torch_compile():
    torch._dynamo.reset()
    ours, theirs = _pair("GRU", {})
    x = torch.randn(6, 3, 12)

    def run(m):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return m(x)[0]

    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    got, eager, want = compiled(ours), run(ours), run(theirs)
    assert got.dtype == eager.dtype == want.dtype
    np.testing.assert_array_equal(got.detach().numpy(), eager.detach().numpy())


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_under_autocast_follow_torch(name):
    """torch's cells compute in bf16 there too; RNNCell returns bfloat16, the others float32."""
    torch.manual_seed(0)
    ours = getattr(rt, name)(12, 20)
    theirs = getattr(torch.nn, name)(12, 20)
    theirs.load_state_dict(ours.state_dict())
    exact = getattr(torch.nn, name)(12, 20).double()
    exact.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 12)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            got, want = ours(x), theirs(x)
        ref = exact(x.double())
        got, want, ref = (o if isinstance(o, tuple) else (o,) for o in (got, want, ref))
        for g, w, r in zip(got, want, ref):
            assert g.dtype == w.dtype
            assert U / 16 < _rel(g, r) <= NORM_BOUND


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_bfloat16_modules_match_torch_dtypes_and_float64_values(name, kw):
    ours, theirs = _pair(name, kw, num_layers=2)
    exact = getattr(torch.nn, name)(12, 20, num_layers=2, **kw)
    exact.load_state_dict(theirs.state_dict())
    ours.to(torch.bfloat16)
    theirs.to(torch.bfloat16)
    exact.double()
    x = torch.randn(9, 4, 12).to(torch.bfloat16)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = _flat(ours(x_ours)), _flat(theirs(x_theirs))
    ref = _flat(exact(x.double()))
    for g, w, r in zip(got, want, ref):
        assert g.dtype == w.dtype == torch.bfloat16 and g.shape == w.shape
        assert _rel(g, r) <= NORM_BOUND
    got[0].float().sum().backward()
    want[0].float().sum().backward()
    assert x_ours.grad.dtype == torch.bfloat16
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert p.grad.dtype == q.grad.dtype == torch.bfloat16


def test_bfloat16_module_sees_every_weight_update():
    """Its float32 copies are refreshed at every call: after an optimiser step and a write
    through .data (EMA helpers' way), the output is that of a fresh module with the new values."""
    torch.manual_seed(2)
    m = rt.GRU(12, 20).to(torch.bfloat16)
    x = torch.randn(6, 3, 12).to(torch.bfloat16)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        m(x)[0].float().sum().backward()
        opt.step()
        m.weight_hh_l0.data.mul_(0.5)
        fresh = rt.GRU(12, 20).to(torch.bfloat16)
        fresh.load_state_dict(m.state_dict())
        with torch.no_grad():
            assert torch.equal(m(x)[0], fresh(x)[0])


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_bfloat16_cells_match_torch_dtypes(name):
    torch.manual_seed(0)
    ours = getattr(rt, name)(12, 20).to(torch.bfloat16)
    theirs = getattr(torch.nn, name)(12, 20).to(torch.bfloat16)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 12).to(torch.bfloat16)
    got, want = ours(x), theirs(x)
    got, want = (o if isinstance(o, tuple) else (o,) for o in (got, want))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == torch.bfloat16
        assert _rel(g, w) <= 2 * NORM_BOUND


def test_bfloat16_module_refuses_float32_input_by_name():
    m = rt.LSTM(12, 20).to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"input: expected dtype torch\.bfloat16"):
        m(torch.randn(5, 2, 12))
    with pytest.raises(TypeError, match=r"hx: expected dtype torch\.bfloat16"):
        m(torch.randn(5, 2, 12).to(torch.bfloat16), (torch.zeros(1, 2, 20), torch.zeros(1, 2, 20)))


def test_bfloat16_module_under_torch_compile():
    torch._dynamo.reset()
    m = rt.LSTM(12, 20).to(torch.bfloat16)
    x = torch.randn(6, 3, 12).to(torch.bfloat16).requires_grad_()
    compiled = torch.compile(lambda x: m(x)[0].float().sum(), backend="aot_eager", fullgraph=True)
    loss = compiled(x)
    loss.backward()
    with torch.no_grad():
        eager = m(x.detach())[0].float().sum()
    assert torch.equal(loss.detach(), eager)
    assert m.weight_ih_l0.grad.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
