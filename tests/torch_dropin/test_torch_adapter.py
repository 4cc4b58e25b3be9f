"""rnnfast.torch: the drop-in for torch.nn.RNN/LSTM/GRU against torch's own modules."""

from __future__ import annotations

import copy
import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

# torch's own LSTM with proj_size says it leaves oneDNN for its reference implementation.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

VARIANTS = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "lstm_proj": ("LSTM", {"proj_size": 2}),
    "gru": ("GRU", {}),
}
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _pair(variant, dtype=torch.float64, **opts):
    cls, kw = VARIANTS[variant]
    native = getattr(torch.nn, cls)(3, 4, **kw, **opts).to(dtype)
    ours = getattr(rt, cls)(3, 4, **kw, **opts).to(dtype)
    ours.load_state_dict(native.state_dict())
    return native, ours


def _close(a, b, tol, what):
    scale = max(float(b.abs().max()), 1e-30) if b.numel() else 1.0
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= tol * scale, f"{what}: {err:.3e} > {tol:.0e} * {scale:.3e}"


def _flat(out):
    """The tensors of forward's result, in order (PackedSequence data included)."""
    y, state = out
    y = y.data if isinstance(y, torch.nn.utils.rnn.PackedSequence) else y
    return [y, *(state if isinstance(state, tuple) else (state,))]


def _run(module, x, hx, kind, batch_first, lengths):
    if kind.startswith("packed"):
        x = pack_padded_sequence(
            x, lengths, batch_first=batch_first, enforce_sorted=kind == "packed_sorted"
        )
    outs = _flat(module(x, hx))
    rng = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=rng, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    return outs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx0", "hx"])
@pytest.mark.parametrize("kind", ["tensor", "unbatched", "packed_sorted", "packed_unsorted"])
@pytest.mark.parametrize(
    ("layers", "bidirectional", "batch_first", "bias"),
    list(itertools.product([1, 2, 3], [False, True], [False, True], [True, False])),
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_torch(variant, layers, bidirectional, batch_first, bias, kind, with_hx, dtype):
    opts = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    torch.manual_seed(0)
    native, ours = _pair(variant, dtype, **opts)
    steps, batch = 5, 3
    lengths = [5, 4, 2] if kind == "packed_sorted" else [2, 5, 3]
    shape = (steps, 3) if kind == "unbatched" else (batch, steps, 3)
    if kind != "unbatched" and not batch_first:
        shape = (steps, batch, 3)
    x = torch.randn(shape, dtype=dtype)
    hx = None
    if with_hx:
        s_shape, c_shape = ours._state_shapes(batch)
        if kind == "unbatched":
            s_shape, c_shape = s_shape[::2], c_shape[::2]
        h = torch.randn(s_shape, dtype=dtype)
        hx = (h, torch.randn(c_shape, dtype=dtype)) if VARIANTS[variant][0] == "LSTM" else h
    results = []
    for module in (native, ours):
        xi = x.clone().requires_grad_()
        hi = None
        if hx is not None:
            hi = tuple(t.clone().requires_grad_() for t in hx) if isinstance(hx, tuple) else None
            hi = hi if hi is not None else hx.clone().requires_grad_()
        outs = _run(module, xi, hi, kind, batch_first, lengths)
        hgrads = [] if hi is None else [t.grad for t in (hi if isinstance(hi, tuple) else (hi,))]
        results.append((outs, xi.grad, hgrads, [p.grad for p in module.parameters()]))
    tol = TOL[dtype]
    (o_n, dx_n, dh_n, g_n), (o_r, dx_r, dh_r, g_r) = results
    for i, (a, b) in enumerate(zip(o_r, o_n)):
        assert a.shape == b.shape and a.dtype == b.dtype
        _close(a.detach(), b.detach(), tol, f"output {i}")
    _close(dx_r, dx_n, tol, "input grad")
    for i, (a, b) in enumerate(zip(dh_r, dh_n)):
        _close(a, b, tol, f"hx grad {i}")
    names = [n for n, _ in native.named_parameters()]
    for name, a, b in zip(names, g_r, g_n):
        _close(a, b, tol, f"{name}.grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("batch", "layout"),
    [
        (0, "seq_first"),
        (1, "seq_first"),
        (1, "unbatched"),
        (3, "batch_first"),
        (8, "seq_first"),
        (8, "batch_first"),
        (40, "seq_first"),
        (40, "batch_first"),
    ],
)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("variant", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_one_step_calls_of_a_module_follow_torch(variant, layers, batch, layout, dtype):
    """A decoder steps a module one input at a time (T = 1) without autograd: such a call runs
    as a cell's step, layer after layer (Stack.direct_stack_step), for a few batch rows, the
    packed path beyond. Both give torch's outputs step after step, y and the state in memory
    of their own, and the next call sees a write through .data."""
    cls, kw = VARIANTS[variant]
    opts = {"num_layers": layers, "batch_first": layout == "batch_first", **kw}
    native, ours = getattr(torch.nn, cls)(24, 160, **opts), getattr(rt, cls)(24, 160, **opts)
    native, ours = native.to(dtype), ours.to(dtype)
    ours.load_state_dict(native.state_dict())
    torch.manual_seed(6)
    shape = {"seq_first": (1, batch, 24), "batch_first": (batch, 1, 24), "unbatched": (1, 24)}
    hx_n = hx_o = None
    with torch.no_grad():
        for step in range(4):
            x = torch.randn(shape[layout], dtype=dtype)
            if step == 2:  # an update the engine is not told of
                for a, b in zip(native.parameters(), ours.parameters()):
                    a.data.mul_(0.5)
                    b.data.mul_(0.5)
            (y_n, hx_n), (y_o, hx_o) = native(x, hx_n), ours(x, hx_o)
            for a, b, what in zip(_flat((y_o, hx_o)), _flat((y_n, hx_n)), "yhc"):
                assert a.shape == b.shape, what
                _close(a, b, 1e-12 if dtype == torch.float64 else 2e-5, f"step {step} {what}")
        h_o = hx_o[0] if isinstance(hx_o, tuple) else hx_o
        kept = h_o.clone()
        y_o.add_(1.0)
        assert torch.equal(h_o, kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("batch", [1, 3, 24])
@pytest.mark.parametrize("variant", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_one_step_training_calls_of_a_module_follow_torch(variant, batch, batch_first, dtype):
    """A decoder trained by stepping a one-layer module (T = 1 calls under autograd): the
    loss's gradients through every step, to the input, the initial state and the weights, are
    those of torch's module in float64. (torch 2.13's own float32 LSTM gives other outputs
    under autograd than without when OpenMP allows one thread, OMP_THREAD_LIMIT=1: its float64
    path is the oracle here.)"""
    cls, kw = VARIANTS[variant]
    native = getattr(torch.nn, cls)(6, 130, batch_first=batch_first, **kw).double()
    ours = getattr(rt, cls)(6, 130, batch_first=batch_first, **kw).to(dtype)
    ours.load_state_dict(native.state_dict())
    torch.manual_seed(3)
    lstm = variant == "lstm"
    start = [torch.randn(4, batch, 6), torch.randn(1, batch, 130), torch.randn(1, batch, 130)]

    def run(module, as_dtype):
        x, h0, c0 = (t.to(as_dtype).requires_grad_() for t in start)
        hx = (h0, c0) if lstm else h0
        loss = 0
        for t in range(4):
            step = x[t : t + 1].transpose(0, 1) if batch_first else x[t : t + 1]
            y, hx = module(step, hx)
            loss = loss + (y * y).sum()
        loss = loss + sum(s.sum() for s in (hx if isinstance(hx, tuple) else (hx,)))
        wrt = [x, h0, *([c0] if lstm else []), *module.parameters()]
        return loss.double(), [g.double() for g in torch.autograd.grad(loss, wrt)]

    (loss_n, grads_n), (loss_o, grads_o) = run(native, torch.float64), run(ours, dtype)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    _close(loss_o.detach(), loss_n.detach(), tol, "loss")
    for i, (a, b) in enumerate(zip(grads_o, grads_n)):
        _close(a, b, tol, f"gradient {i}")


@pytest.mark.parametrize("variant", ["lstm", "gru", "lstm_proj"])
def test_lazily_negated_inputs_and_states_are_read_as_torch_reads_them(variant):
    """A tensor with torch's neg bit (a real view of a conjugated complex tensor is one; its
    memory holds the values' negatives, and NumPy refuses it) gives torch's outputs and
    gradients, with and without autograd."""
    native, ours = _pair(variant)
    torch.manual_seed(2)
    x = torch.randn(6, 2, 3, dtype=torch.complex128).conj().imag.requires_grad_()
    h0 = torch._neg_view(torch.randn(1, 2, 2 if variant == "lstm_proj" else 4, dtype=x.dtype))
    hx = (h0, torch._neg_view(torch.randn(1, 2, 4, dtype=x.dtype))) if "lstm" in variant else h0
    assert x.is_neg() and h0.is_neg()
    with torch.no_grad():
        for a, b, what in zip(_flat(ours(x, hx)), _flat(native(x, hx)), "yhc"):
            _close(a, b, TOL[x.dtype], what)
    outs = [_flat(m(x, hx)) for m in (ours, native)]
    for a, b, what in zip(*outs, "yhc"):
        _close(a.detach(), b.detach(), TOL[x.dtype], what)
    dx = [torch.autograd.grad(sum((o * o).sum() for o in out), x)[0] for out in outs]
    _close(dx[0], dx[1], TOL[x.dtype], "dx")


@pytest.mark.parametrize("variant", [*VARIANTS, "gru_reset_before"])
def test_gradcheck(variant):
    torch.manual_seed(0)
    if variant == "gru_reset_before":
        m = rt.GRU(3, 4, 2, bidirectional=True, linear_before_reset=False).double()
    else:
        cls, kw = VARIANTS[variant]
        m = getattr(rt, cls)(3, 4, 2, bidirectional=True, **kw).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    lstm = m.mode == "LSTM"
    s_shape, c_shape = m._state_shapes(2)
    h0 = torch.randn(s_shape, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(c_shape, dtype=torch.float64, requires_grad=True)
    params = list(m.parameters())

    def f(x, h0, c0, *ps):
        with torch.no_grad():
            for p, v in zip(params, ps):
                p.copy_(v)
        packed = pack_padded_sequence(x, [4, 2], enforce_sorted=False)
        y, s = m(packed, (h0, c0) if lstm else h0)
        return (y.data, *(s if lstm else (s,)))

    # The parameters enter through the module: check x and the states here, the parameters in
    # test_matches_torch (against torch's autograd).
    inputs = (x, h0, c0) if lstm else (x, h0)
    func = (lambda x, h0, c0: f(x, h0, c0)) if lstm else (lambda x, h0: f(x, h0, None))
    assert torch.autograd.gradcheck(func, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradcheck_of_parameters():
    """The parameters as function inputs: the engine's gradients through torch.func."""
    torch.manual_seed(0)
    m = rt.LSTM(3, 4, 2, proj_size=2, bidirectional=True).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    params = {n: p.detach().clone().requires_grad_() for n, p in m.named_parameters()}

    def f(*ps):
        y, _ = torch.func.functional_call(m, dict(zip(names, ps)), (x,))
        return y

    assert torch.autograd.gradcheck(f, tuple(params.values()), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_no_grad_and_inference_mode_take_the_inference_path():
    torch.manual_seed(0)
    native, ours = _pair("lstm", torch.float32, num_layers=2)
    x = torch.randn(6, 2, 3)
    y_ref, _ = native(x)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            y, (_h, _c) = ours(x)
        assert not y.requires_grad and y.grad_fn is None
        _close(y, y_ref.detach(), 2e-5, "y")
    y, _ = ours(x)
    assert y.grad_fn is not None  # the parameters require grad: a tape


SECOND_ORDER = {
    "lstm_2_layers_bi": lambda: torch.nn.LSTM(3, 4, 2, bidirectional=True, dtype=torch.float64),
    "lstm_proj": lambda: torch.nn.LSTM(3, 4, proj_size=2, dtype=torch.float64),
    "gru": lambda: torch.nn.GRU(3, 4, batch_first=True, dtype=torch.float64),
    "rnn_relu": lambda: torch.nn.RNN(3, 4, nonlinearity="relu", dtype=torch.float64),
    "gru_eval_dropout": lambda: torch.nn.GRU(3, 4, 2, dropout=0.5, dtype=torch.float64).eval(),
}


@pytest.mark.parametrize("kind", SECOND_ORDER)
def test_second_derivatives_as_torchs(kind):
    """A gradient penalty (the norm of dL/dx, differentiated again: WGAN-GP, input-gradient
    regularisers) from an initial state that needs gradients too: the penalty's gradients for
    every parameter, the input and the state equal torch.nn's (torch's operators compute the
    differentiable backward: rnnfast's engine backward is not itself differentiable)."""
    torch.manual_seed(0)
    native = SECOND_ORDER[kind]()
    ours = rt.patch(copy.deepcopy(native))
    layers = native.num_layers * (2 if native.bidirectional else 1)
    got = []
    for m in (native, ours):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
        h0 = torch.randn(layers, 4 if m.batch_first else 3, native.proj_size or 4, generator=g)
        h0 = h0.double().requires_grad_()
        y, _ = m(x, (h0, torch.zeros(layers, h0.shape[1], 4).double()) if m.mode == "LSTM" else h0)
        (dx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
        (dx * dx).sum().backward()
        got.append([x.grad, h0.grad, *[p.grad for p in m.parameters()]])
    for a, b in zip(*got):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rt.GRU(3, 4, 2, dropout=0.5).double().train(),  # rnnfast's own masks
        lambda: rt.GRU(3, 4, linear_before_reset=False).double(),  # no torch.nn form
    ],
    ids=["dropout_in_training", "gru_linear_before_reset_false"],
)
def test_a_double_backward_torch_cannot_recompute_is_refused(make):
    m = make()
    x = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    y, _ = m(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported here"):
        g.sum().backward()


def test_a_double_backward_over_variable_lengths_is_refused():
    m = rt.LSTM(3, 4).double()
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [3, 2])
    y, _ = m(packed)
    (g,) = torch.autograd.grad(y.data.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported here"):
        g.sum().backward()


def test_input_grad_is_skipped_when_not_needed_and_params_frozen():
    m = rt.LSTM(3, 4)
    for p in m.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 2, 3, requires_grad=True)
    y, _ = m(x)
    y.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in m.parameters())
    m2 = rt.LSTM(3, 4)
    y, _ = m2(torch.randn(3, 2, 3))
    y.sum().backward()
    assert all(p.grad is not None for p in m2.parameters())


def test_state_dicts_load_both_ways_and_modules_copy():
    torch.manual_seed(0)
    native = torch.nn.GRU(3, 5, 2, bidirectional=True)
    ours = rt.GRU(3, 5, 2, bidirectional=True)
    ours.load_state_dict(native.state_dict())
    back = torch.nn.GRU(3, 5, 2, bidirectional=True)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3)
    for other in (back, copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        _close(other(x)[0].detach(), native(x)[0].detach(), 2e-5, type(other).__name__)
    assert isinstance(ours, torch.nn.RNNBase) and ours.mode == "GRU"
    torch.manual_seed(3)
    a = torch.nn.LSTM(3, 4, 2)
    torch.manual_seed(3)
    b = rt.LSTM(3, 4, 2)  # the same initial values as torch's for the same seed
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_parameter_updates_are_seen():
    """Packed weights are rebuilt after in-place changes and .to(dtype)."""
    torch.manual_seed(0)
    native, ours = _pair("lstm", torch.float32)
    x = torch.randn(4, 2, 3)
    ours(x)
    with torch.no_grad():
        for p, q in zip(native.parameters(), ours.parameters()):
            p.mul_(1.5)
            q.mul_(1.5)
    _close(ours(x)[0].detach(), native(x)[0].detach(), 2e-5, "after mul_")
    ours.double()
    native.double()
    _close(ours(x.double())[0].detach(), native(x.double())[0].detach(), 1e-10, "after double")
    with torch.no_grad():
        ours.weight_hh_l0.data = ours.weight_hh_l0.data * 0.5
        native.weight_hh_l0.data = native.weight_hh_l0.data * 0.5
    _close(ours(x.double())[0].detach(), native(x.double())[0].detach(), 1e-10, "after .data =")


def test_patch_keeps_parameters_and_optimiser_and_unpatch_restores():
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Embedding(10, 3),
            Take(torch.nn.LSTM(3, 8, 2, batch_first=True)),
            torch.nn.Linear(8, 10),
        ).double()

    def train(net, opt, steps):
        rng = torch.Generator().manual_seed(5)
        for _ in range(steps):
            ids = torch.randint(0, 10, (4, 6), generator=rng)
            loss = torch.nn.functional.cross_entropy(net(ids).reshape(-1, 10), ids.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    native = model()
    native_opt = torch.optim.Adam(native.parameters(), lr=0.01)
    patched = model()
    opt = torch.optim.Adam(patched.parameters(), lr=0.01)  # built before the patch
    before = [id(p) for p in patched.parameters()]
    train(native, native_opt, 2)
    train(patched, opt, 2)
    rt.patch(patched)
    train(native, native_opt, 3)
    train(patched, opt, 3)
    assert type(patched[1].rnn) is rt.LSTM
    assert [id(p) for p in patched.parameters()] == before
    for p, q in zip(native.parameters(), patched.parameters()):
        _close(q.detach(), p.detach(), 1e-9, "parameters after training")
    rt.unpatch(patched)
    assert type(patched[1].rnn) is torch.nn.LSTM
    assert [id(p) for p in patched.parameters()] == before
    gru = rt.GRU(3, 4, linear_before_reset=False)
    with pytest.raises(ValueError, match="linear_before_reset=False"):
        rt.unpatch(torch.nn.Sequential(gru))
    with pytest.raises(TypeError, match="model"):
        rt.patch("not a model")


class Take(torch.nn.Module):
    """An RNN whose output alone goes on (Sequential passes one value)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def test_gru_without_linear_before_reset_matches_the_engine():
    import rnnfast

    torch.manual_seed(0)
    m = rt.GRU(3, 4, 2, linear_before_reset=False).double()
    e = rnnfast.GRU(3, 4, 2, linear_before_reset=False, dtype=np.float64)
    e.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    np.testing.assert_allclose(m(x)[0].detach().numpy(), e(x.numpy())[0], rtol=1e-13, atol=1e-15)
    assert "linear_before_reset=False" in repr(m)


def test_dropout_follows_torch_seed_and_mode():
    torch.manual_seed(0)
    m = rt.LSTM(3, 6, 3, dropout=0.5)
    x = torch.randn(5, 2, 3)
    torch.manual_seed(1)
    y1, _ = m(x)
    torch.manual_seed(1)
    y2, _ = m(x)
    y3, _ = m(x)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    m.eval()
    native = torch.nn.LSTM(3, 6, 3, dropout=0.5).eval()
    native.load_state_dict(m.state_dict())
    _close(m(x)[0].detach(), native(x)[0].detach(), 2e-5, "eval: no dropout")
    m.train()
    with torch.no_grad():  # training mode without a tape still drops (as torch does)
        assert not torch.allclose(m(x)[0], native(x)[0])
        # and so does a one-step call (a decoder's), which the direct path would not
        torch.manual_seed(1)
        first = m(x[:1])[0]
        torch.manual_seed(2)
        assert not torch.equal(m(x[:1])[0], first)
    native_p1 = torch.nn.GRU(3, 6, 2, dropout=1.0).train()
    ours_p1 = rt.GRU(3, 6, 2, dropout=1.0)
    ours_p1.load_state_dict(native_p1.state_dict())
    _close(ours_p1(x)[0].detach(), native_p1(x)[0].detach(), 2e-5, "p=1")


@pytest.mark.parametrize(
    ("make", "call", "error", "message"),
    [
        (lambda: rt.LSTM(3, 4, device="meta"), None, ValueError, "device: rnnfast runs on the CPU"),
        (lambda: rt.LSTM(3, 4, dtype=torch.float16), None, TypeError, "dtype: rnnfast runs"),
        (
            lambda: rt.LSTM(3, 4),
            lambda m: m(torch.randn(2, 1, 3, dtype=torch.float16)),
            TypeError,
            "input: rnnfast runs float32, float64 and bfloat16; got torch.float16",
        ),
        (
            lambda: rt.LSTM(3, 4),
            lambda m: m(torch.randn(2, 1, 3, device="meta")),
            ValueError,
            "input: rnnfast runs on the CPU; got a tensor on meta",
        ),
        (
            lambda: rt.GRU(3, 4).half(),
            lambda m: m(torch.randn(2, 1, 3)),
            TypeError,
            "weight_ih_l0: rnnfast runs float32, float64 and bfloat16",
        ),
        (
            lambda: rt.GRU(3, 4),
            lambda m: m(torch.randn(2, 1, 3, dtype=torch.float64)),
            TypeError,
            r"input: expected dtype torch.float32 \(the parameters'\)",
        ),
        (
            lambda: rt.GRU(3, 4),
            lambda m: m(torch.randn(2, 1, 5)),
            ValueError,
            "input: expected input_size 3",
        ),
        (
            lambda: rt.GRU(3, 4),
            lambda m: m(torch.randn(2, 5)),
            ValueError,
            "input: expected input_size 3",
        ),
        (
            lambda: rt.GRU(3, 4),
            lambda m: m(torch.randn(1, 2, 1, 3)),
            ValueError,
            "input: expected 3 dimensions",
        ),
        (
            lambda: rt.GRU(3, 4),
            lambda m: m(torch.randn(2, 1, 3), torch.zeros(1, 2, 4)),
            ValueError,
            r"hx: expected shape \(1, 1, 4\), got \(1, 2, 4\)",
        ),
        (
            lambda: rt.LSTM(3, 4, proj_size=2),
            lambda m: m(torch.randn(2, 1, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))),
            ValueError,
            r"hx\[0\] \(h_0\): expected shape \(1, 1, 2\)",
        ),
        (
            lambda: rt.LSTM(3, 4),
            lambda m: m(torch.randn(2, 1, 3), torch.zeros(1, 1, 4)),
            TypeError,
            r"hx: expected a pair \(h_0, c_0\)",
        ),
        (lambda: rt.RNN(3, 4), lambda m: m(np.zeros((2, 1, 3))), TypeError, "input: expected a"),
        (
            lambda: rt.GRU(3, 4, linear_before_reset=1),
            None,
            TypeError,
            "linear_before_reset: expected a bool",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(make, call, error, message):
    with pytest.raises(error, match=message):
        m = make()
        call(m)


def test_threads_follow_torch_unless_chosen():
    code = """
import torch, rnnfast, rnnfast.torch as rt
torch.set_num_threads(1)
m = rt.GRU(3, 4)
m(torch.randn(2, 1, 3))
first = rnnfast.get_num_threads()
rnnfast.set_num_threads(2)
m(torch.randn(2, 1, 3))
print(first, rnnfast.get_num_threads())
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "2"]


def test_import_rnnfast_does_not_import_torch():
    code = "import sys, rnnfast; rnnfast.LSTM(2, 3); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("variant", ["lstm", "gru", "lstm_proj"])
def test_torch_compile_runs_the_custom_ops(variant):
    torch._dynamo.reset()
    torch.manual_seed(0)
    cls, kw = VARIANTS[variant]
    m = getattr(rt, cls)(3, 4, 2, dropout=0.3, **kw).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def step(module, x):
        y, _ = module(x)
        return (y**2).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    for mode in ("eval", "train"):
        getattr(m, mode)()
        torch.manual_seed(7)
        m.zero_grad()
        loss_c = compiled(m, x)
        loss_c.backward()
        grads_c = [p.grad.clone() for p in m.parameters()]
        if mode == "eval":  # dropout's masks differ between eager and compiled draws
            m.zero_grad()
            loss_e = step(m, x)
            loss_e.backward()
            _close(loss_c.detach(), loss_e.detach(), 1e-12, "loss")
            for a, p in zip(grads_c, m.parameters()):
                _close(a, p.grad, 1e-12, "grad")
        else:
            assert torch.isfinite(loss_c) and all(torch.isfinite(g).all() for g in grads_c)


def test_compiled_graph_holds_the_rnnfast_operator():
    torch._dynamo.reset()
    graphs = []

    def record(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm.forward

    m = rt.GRU(3, 4, 2)
    compiled = torch.compile(lambda x: m(x)[0].sum(), backend=record, fullgraph=True)
    compiled(torch.randn(5, 2, 3)).backward()
    assert len(graphs) == 1 and "rnnfast.stack_forward" in graphs[0]
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside Inductor's own imports
def test_inductor_compiled_training_step_equals_eager():
    """The default backend (Inductor, which generates C++ for the rest of the graph)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = rt.LSTM(3, 4, 2, proj_size=2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def step(x):
        y, (_, c) = m(x)
        return (y**2).sum() + c.sum()

    loss_c = torch.compile(step, fullgraph=True)(x)
    loss_c.backward()
    grads_c = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    loss_e = step(x)
    loss_e.backward()
    _close(loss_c.detach(), loss_e.detach(), 1e-12, "loss")  # Inductor sums in its own order
    for a, p in zip(grads_c, m.parameters()):
        _close(a, p.grad, 1e-12, "grad")
