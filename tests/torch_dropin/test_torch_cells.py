"""rnnfast.torch.RNNCell/LSTMCell/GRUCell against torch.nn's cells: outputs and gradients
(batched, unbatched, hx given or not, bias or not, float32 and float64), step-by-step loops
as decoders write them, patch/unpatch keeping the Parameter objects, state dicts, save/load,
tracing/export, torch.compile, and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")

PAIRS = {
    "lstm": (torch.nn.LSTMCell, rt.LSTMCell, {}),
    "gru": (torch.nn.GRUCell, rt.GRUCell, {}),
    "rnn_tanh": (torch.nn.RNNCell, rt.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNNCell, rt.RNNCell, {"nonlinearity": "relu"}),
}
TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 1e-12, "atol": 1e-13}}


def _pair(kind: str, bias: bool = True, dtype: torch.dtype = torch.float64, size=(5, 7)):
    native_cls, ours_cls, kwargs = PAIRS[kind]
    torch.manual_seed(0)
    native = native_cls(*size, bias=bias, dtype=dtype, **kwargs)
    ours = ours_cls(*size, bias=bias, dtype=dtype, **kwargs)
    ours.load_state_dict(native.state_dict())
    return native, ours


def _flat(out):
    return out if isinstance(out, tuple) else (out,)


def _state(kind, batch, dtype, requires_grad, hidden=7):
    shape = (batch, hidden) if batch else (hidden,)

    def one():
        return torch.randn(shape, dtype=dtype, requires_grad=requires_grad)

    return (one(), one()) if kind == "lstm" else one()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batch", [0, 1, 4, 5, 33], ids=lambda b: f"b{b}" if b else "unbatched")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_one_step_matches_torch_forward_and_backward(kind, bias, batch, with_hx, dtype):
    """A small cell's step against torch's, forward and backward: direct up to 4 rows, packed
    beyond (_engine.runs_direct; the larger sizes' limits have their own test below)."""
    native, ours = _pair(kind, bias, dtype)
    torch.manual_seed(1)
    x = torch.randn((batch, 5) if batch else (5,), dtype=dtype, requires_grad=True)
    hx = _state(kind, batch, dtype, True) if with_hx else None
    want, got = _flat(native(x, hx)), _flat(ours(x, hx))
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, **TOL[dtype])
    weights = [torch.randn(w.shape, dtype=dtype) for w in want]
    inputs = [x, *(_flat(hx) if hx is not None else ())]
    grads_want = torch.autograd.grad(want, [*inputs, *native.parameters()], weights)
    grads_got = torch.autograd.grad(got, [*inputs, *ours.parameters()], weights)
    for w, g in zip(grads_want, grads_got):
        torch.testing.assert_close(g, w, **TOL[dtype])


@pytest.mark.parametrize("kind", list(PAIRS))
def test_a_decoder_loop_trains_as_torch_does(kind):
    """A teacher-forced loop of 12 steps over 3 optimiser updates: losses and weights equal
    torch's step by step (float64)."""
    native, ours = _pair(kind)
    head_n = torch.nn.Linear(7, 5, dtype=torch.float64)
    head_o = copy.deepcopy(head_n)
    opt_n = torch.optim.Adam([*native.parameters(), *head_n.parameters()], lr=1e-2)
    opt_o = torch.optim.Adam([*ours.parameters(), *head_o.parameters()], lr=1e-2)
    seq = torch.randn(12, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        losses = []
        for cell, head, opt in ((native, head_n, opt_n), (ours, head_o, opt_o)):
            opt.zero_grad()
            hx, loss = None, torch.zeros((), dtype=torch.float64)
            for t in range(seq.shape[0] - 1):
                hx = cell(seq[t], hx)
                h = hx[0] if isinstance(hx, tuple) else hx
                loss = loss + ((head(h) - seq[t + 1]) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-12)
    for a, b in zip(native.parameters(), ours.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_gradients_handed_to_torch_keep_their_values_through_later_steps(kind):
    """The gradient arrays come from the cell's memory pool and go back when torch drops them:
    those a caller keeps (torch.autograd.grad's results, a .grad torch took over) never change
    while later steps run, and every step's gradient equals torch.nn's."""
    native, ours = _pair(kind)
    kept, clones = [], []
    for step in range(4):
        torch.manual_seed(step)
        x = torch.randn(3, 5, dtype=torch.float64)
        want, grads = (
            torch.autograd.grad(sum(o.sum() for o in _flat(cell(x))), list(cell.parameters()))
            for cell in (native, ours)
        )
        for g, w in zip(grads, want):
            torch.testing.assert_close(g, w, **TOL[torch.float64])
        kept.append(grads)
        clones.append([g.clone() for g in grads])
    hx = _state(kind, 3, torch.float64, False)  # a state, so that W_hh's gradient is not 0
    _flat(ours(torch.randn(3, 5, dtype=torch.float64), hx))[0].sum().backward()  # taken over
    held = [p.grad for p in ours.parameters()]
    held_clones = [g.clone() for g in held]
    _flat(ours(torch.randn(3, 5, dtype=torch.float64), hx))[0].sum().backward()  # added to it
    for grads, copies in zip(kept, clones):
        for g, c in zip(grads, copies):
            assert torch.equal(g, c)
    for p, before in zip(ours.parameters(), held_clones):
        assert p.grad is not None and not torch.equal(p.grad, before)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_no_grad_calls_leave_the_inputs_alone_and_build_no_graph(kind):
    native, ours = _pair(kind, dtype=torch.float32)
    x = torch.randn(3, 5)
    hx = _state(kind, 3, torch.float32, False)
    before = [t.clone() for t in (x, *_flat(hx))]
    with torch.no_grad():
        got = _flat(ours(x, hx))
        want = _flat(native(x, hx))
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, **TOL[torch.float32])
        assert g.grad_fn is None and not g.requires_grad
    for b, a in zip(before, (x, *_flat(hx))):
        assert torch.equal(a, b)


def test_strided_input_and_state_are_read_as_torch_reads_them():
    native, ours = _pair("lstm", dtype=torch.float32)
    x = torch.randn(10, 5)[::2][:3]  # rows 0, 2, 4: not contiguous
    h, c = torch.randn(7, 3).t(), torch.randn(7, 3).t()
    assert not x.is_contiguous() and not h.is_contiguous()
    with torch.no_grad():
        for w, g in zip(native(x, (h, c)), ours(x, (h, c))):
            torch.testing.assert_close(g, w, **TOL[torch.float32])


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("batch", [0, 3, 24], ids=lambda b: f"b{b}" if b else "unbatched")
@pytest.mark.parametrize("kind", list(PAIRS))
def test_views_at_an_offset_and_lazily_negated_tensors_are_read_as_torch_reads_them(
    kind, batch, grad
):
    """The common call hands the engine its tensors' addresses (Stack.direct_step_at): a
    contiguous view at an offset into a larger tensor starts at its own first value, and a
    tensor with torch's neg bit (its memory holds the values' negatives; a real view of a
    conjugated complex tensor is one) is resolved, never read raw and never refused."""
    native, ours = _pair(kind, dtype=torch.float32)
    torch.manual_seed(5)
    shape = (batch, 5) if batch else (5,)
    state = (batch, 7) if batch else (7,)
    parts = 2 if kind == "lstm" else 1
    offset_x = torch.randn(4, *shape)[2]  # contiguous, at an offset into its storage
    offset_h = [torch.randn(3, *state)[1] for _ in range(parts)]
    negated_x = torch._neg_view(torch.randn(shape))
    negated_h = [torch._neg_view(torch.randn(state)) for _ in range(parts)]
    conj_x = torch.randn(*shape, dtype=torch.complex64).conj().imag  # strided, neg bit
    assert offset_x.storage_offset() > 0 and offset_x.is_contiguous()
    assert negated_x.is_neg() and negated_x.is_contiguous() and conj_x.is_neg()
    cases = [(offset_x, offset_h), (negated_x, negated_h), (conj_x, None), (offset_x, negated_h)]
    for x, h in cases:
        hx = None if h is None else (tuple(h) if kind == "lstm" else h[0])
        with torch.set_grad_enabled(grad):
            want, got = _flat(native(x, hx)), _flat(ours(x, hx))
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, **TOL[torch.float32])


@pytest.mark.parametrize("kind", list(PAIRS))
def test_patch_swaps_cells_keeping_parameters_and_unpatch_restores(kind):
    native_cls, _, kwargs = PAIRS[kind]
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"cell": native_cls(5, 7, **kwargs), "head": torch.nn.Linear(7, 2)})
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 5)
    want = _flat(model["cell"](x))
    rt.patch(model)
    assert type(model["cell"]) is PAIRS[kind][1]
    assert all(a is b for a, b in zip(params, model.parameters()))
    got = _flat(model["cell"](x))
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, **TOL[torch.float32])
    sum(o.sum() for o in got).backward()
    opt.step()  # the optimiser built before patching updates the same Parameters
    assert all(p.grad is not None for p in model["cell"].parameters())
    rt.unpatch(model)
    assert type(model["cell"]) is native_cls
    if kind.startswith("rnn"):
        assert model["cell"].nonlinearity == kwargs["nonlinearity"]


def test_state_dicts_and_saved_cells_load_with_torch_defaults(tmp_path):
    torch.manual_seed(0)
    cell = rt.GRUCell(5, 7)
    assert set(cell.state_dict()) == set(torch.nn.GRUCell(5, 7).state_dict())
    path = tmp_path / "cell.pt"
    torch.save(cell, path)
    back = torch.load(path)
    assert type(back) is rt.GRUCell
    x = torch.randn(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(back(x), cell(x), rtol=0, atol=0)


def test_weights_changed_through_data_are_seen():
    native, ours = _pair("lstm", dtype=torch.float32)
    x = torch.randn(2, 5)
    with torch.no_grad():
        ours(x)
    for a, b in zip(native.parameters(), ours.parameters()):
        a.data.mul_(0.5)
        b.data.mul_(0.5)
    with torch.no_grad():
        for w, g in zip(native(x), ours(x)):
            torch.testing.assert_close(g, w, **TOL[torch.float32])


@pytest.mark.filterwarnings("ignore")  # torch.jit's deprecation, the exporter's notes
def test_trace_and_onnx_export_record_torch_cells(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    native, ours = _pair("gru", dtype=torch.float32)
    x, h = torch.randn(2, 5), torch.randn(2, 7)
    with torch.no_grad():
        traced = torch.jit.trace(ours, (x, h))
        torch.testing.assert_close(traced(x, h), native(x, h), **TOL[torch.float32])
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::linear" in kinds  # torch's cell, as torch traces it (decomposed)
    path = tmp_path / "cell.onnx"
    torch.onnx.export(ours, (x, h), str(path), dynamo=False, input_names=["x", "h"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "h": h.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, native(x, h).numpy(), rtol=1e-5, atol=1e-6)
    assert type(ours) is rt.GRUCell


def _cell_loop(cell, seq):
    hx = None
    for t in range(seq.shape[0]):
        hx = cell(seq[t], hx)
    return hx


def test_torch_compile_runs_a_cell_loop():
    native, ours = _pair("lstm", dtype=torch.float32)

    def run(cell, seq):
        return _cell_loop(cell, seq)[0]

    seq = torch.randn(4, 3, 5, requires_grad=True)
    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    got, want = compiled(ours, seq), run(native, seq)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    (g_got,) = torch.autograd.grad(got.sum(), [seq])
    (g_want,) = torch.autograd.grad(want.sum(), [seq])
    torch.testing.assert_close(g_got, g_want, **TOL[torch.float32])


def test_torch_compile_runs_a_cell_loop_without_grad():
    native, ours = _pair("gru", dtype=torch.float32)
    seq = torch.randn(4, 3, 5)
    compiled = torch.compile(_cell_loop, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        want = _cell_loop(native, seq)
        torch.testing.assert_close(compiled(ours, seq), want, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("hidden", "batch"), [(128, 16), (128, 17), (128, 32), (128, 33), (256, 32), (48, 16)]
)
@pytest.mark.parametrize("kind", list(PAIRS))
def test_sizes_either_side_of_the_direct_paths_limits_follow_torch(kind, hidden, batch, dtype):
    """runs_direct picks the direct or the packed step by dtype, hidden size and batch, with
    and without autograd: steps on each side of its limits equal torch's cells, outputs and
    every gradient (float32: the limits past four rows on AVX-512; float64: below them)."""
    native, ours = _pair(kind, dtype=dtype, size=(24, hidden))
    torch.manual_seed(2)
    x = torch.randn(batch, 24, dtype=dtype, requires_grad=True)
    hx = _state(kind, batch, dtype, True, hidden)
    # float32 sums of up to 280 products in another order than torch's: 1-3e-6 apart here
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else TOL[dtype]
    with torch.no_grad():
        for w, g in zip(_flat(native(x, hx)), _flat(ours(x, hx))):
            torch.testing.assert_close(g, w, **tol)
    want, got = _flat(native(x, hx)), _flat(ours(x, hx))
    weights = [torch.randn(w.shape, dtype=dtype) for w in want]
    inputs = [x, *_flat(hx)]
    grads_want = torch.autograd.grad(want, [*inputs, *native.parameters()], weights)
    grads_got = torch.autograd.grad(got, [*inputs, *ours.parameters()], weights)
    for w, g in zip(grads_want, grads_got):
        torch.testing.assert_close(g, w, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hx_as", ["none", "given"])
@pytest.mark.parametrize("batch", [0, 1, 4, 5, 16], ids=lambda b: f"b{b}" if b else "unbatched")
@pytest.mark.parametrize("kind", list(PAIRS))
def test_no_grad_steps_of_every_batch_size_follow_torch_and_writes_to_the_weights(
    kind, batch, hx_as, dtype
):
    """Without autograd a few batch rows run from the weights as they are (Stack.direct_step),
    more from the packed copy: both equal torch's cells, unbatched and batched, and both see
    a write through `.data` at the next call."""
    native, ours = _pair(kind, dtype=dtype, size=(9, 20))
    torch.manual_seed(3)
    x = torch.randn((batch, 9) if batch else (9,), dtype=dtype)
    shape = (batch, 20) if batch else (20,)
    hx = None
    if hx_as != "none":
        parts = [torch.randn(shape, dtype=dtype) for _ in range(2 if kind == "lstm" else 1)]
        # LSTMCell's pair as a tuple or, as torch takes it too, a list
        hx = (tuple(parts) if batch % 2 else parts) if kind == "lstm" else parts[0]
    for _ in range(2):
        with torch.no_grad():
            want, got = _flat(native(x, hx)), _flat(ours(x, hx))
        for w, g in zip(want, got):
            assert g.shape == w.shape and g.dtype == w.dtype
            torch.testing.assert_close(g, w, **TOL[dtype])
        for a, b in zip(native.parameters(), ours.parameters()):
            a.data.mul_(-0.5)
            b.data.mul_(-0.5)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda c: c(torch.randn(2, 3, 5)), ValueError, "input: LSTMCell expects 2 dimensions"),
        (lambda c: c(torch.randn(2, 4)), ValueError, "input: expected input_size 5"),
        (lambda c: c(torch.randn(2, 5).double()), TypeError, "input: expected dtype"),
        (lambda c: c(torch.randn(2, 5).half()), TypeError, "input: rnnfast runs float32"),
        (lambda c: c([1.0] * 5), TypeError, "input: expected a Tensor"),
        (lambda c: c(torch.randn(2, 5), torch.randn(2, 7)), TypeError, "hx: expected a pair"),
        (
            lambda c: c(torch.randn(2, 5), (torch.randn(3, 7), torch.randn(3, 7))),
            ValueError,
            r"hx\[0\] \(h\): expected shape \(2, 7\)",
        ),
        (
            lambda c: c(torch.randn(5), (torch.randn(1, 7), torch.randn(1, 7))),
            ValueError,
            r"expected shape \(7,\)",
        ),
        (
            lambda c: c(torch.randn(2, 5), (torch.randn(2, 7), torch.randn(2, 7).double())),
            TypeError,
            r"hx\[1\] \(c\): expected dtype",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(rt.LSTMCell(5, 7))


def test_bad_construction_is_refused_by_name():
    with pytest.raises(ValueError, match="nonlinearity"):
        rt.RNNCell(5, 7, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="dtype"):
        rt.GRUCell(5, 7, dtype=torch.float16)


def test_the_readme_rewrite_of_a_cell_loop_gives_the_loops_outputs():
    """README.md: a teacher-forced LSTMCell loop equals one LSTM call holding its weights."""
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(5, 7)
    seq = torch.randn(6, 2, 5)
    hx, outs = None, []
    for t in range(seq.shape[0]):
        hx = cell(seq[t], hx)
        outs.append(hx[0])
    lstm = rt.LSTM(cell.input_size, cell.hidden_size)
    lstm.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    y, (h_n, c_n) = lstm(seq)
    torch.testing.assert_close(y, torch.stack(outs), **TOL[torch.float32])
    torch.testing.assert_close(h_n[0], hx[0], **TOL[torch.float32])
    torch.testing.assert_close(c_n[0], hx[1], **TOL[torch.float32])


def test_patch_can_leave_the_cells_torchs():
    model = torch.nn.ModuleDict({"rnn": torch.nn.GRU(5, 7), "cell": torch.nn.GRUCell(5, 7)})
    rt.patch(model, cells=False)
    assert type(model["rnn"]) is rt.GRU and type(model["cell"]) is torch.nn.GRUCell
    with pytest.raises(TypeError, match="cells: expected a bool"):
        rt.patch(model, cells="no")


def test_a_refused_patch_changes_nothing():
    """A module on another device is refused before any module changes class."""
    model = torch.nn.ModuleDict({"a": torch.nn.LSTMCell(5, 7), "b": torch.nn.LSTM(5, 7)})
    fake = torch.nn.Parameter(torch.empty(28, 5, device="meta"))
    model["b"].weight_ih_l0 = fake
    with pytest.raises(ValueError, match=r"b \(LSTM\) has parameters on meta"):
        rt.patch(model)
    assert type(model["a"]) is torch.nn.LSTMCell and type(model["b"]) is torch.nn.LSTM


@pytest.mark.parametrize("kind", list(PAIRS))
def test_an_empty_batch_gives_empty_outputs_and_gradients(kind):
    native, ours = _pair(kind, dtype=torch.float32)
    x = torch.randn(0, 5, requires_grad=True)
    want, got = _flat(native(x)), _flat(ours(x))
    assert [g.shape for g in got] == [w.shape for w in want] == [(0, 7)] * len(want)
    sum(o.sum() for o in got).backward()
    assert x.grad.shape == (0, 5)


@pytest.mark.parametrize("batch", [0, 3], ids=["unbatched", "b3"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_gradcheck_of_one_step_over_input_state_and_weights(kind, batch):
    """torch.autograd.gradcheck (central differences in float64) of the cell's autograd node,
    the parameters included through torch.func.functional_call."""
    _, ours = _pair(kind, dtype=torch.float64)
    torch.manual_seed(2)
    x = torch.randn((batch, 5) if batch else (5,), dtype=torch.float64, requires_grad=True)
    state = _flat(_state(kind, batch, torch.float64, True))
    names = [n for n, _ in ours.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in ours.parameters()]

    def step(x, *rest):
        hx = rest[: len(state)]
        params = dict(zip(names, rest[len(state) :]))
        return torch.func.functional_call(ours, params, (x, hx if kind == "lstm" else hx[0]))

    assert torch.autograd.gradcheck(step, (x, *state, *weights))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_retained_graph_gives_the_same_gradients_twice(kind):
    _, ours = _pair(kind, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    loss = _flat(ours(x, _state(kind, 3, torch.float64, True)))[0].square().sum()
    first = torch.autograd.grad(loss, [x, *ours.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *ours.parameters()])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(loss, [x])


def test_only_the_cell_state_used_still_gives_gradients():
    native, ours = _pair("lstm", dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    grads = []
    for cell in (native, ours):
        _, c = cell(x)
        grads.append(torch.autograd.grad(c.sum(), [x, *cell.parameters()], allow_unused=True))
    for w, g in zip(*grads):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


def test_an_input_changed_in_place_after_the_step_is_refused_at_backward():
    _, ours = _pair("lstm", dtype=torch.float32)
    x = torch.randn(2, 5, requires_grad=True)
    h = torch.randn(2, 7)
    out, _ = ours(x, (h, torch.zeros(2, 7)))
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_a_cells_second_derivatives_are_torchs(kind, batched):
    """A gradient penalty through one step (dL/dx differentiated again), with a state that
    needs gradients: every gradient equals torch.nn's cell's."""
    native, ours = _pair(kind, dtype=torch.float64)
    got = []
    for m in (native, ours):
        g = torch.Generator().manual_seed(3)
        shape = (2,) if batched else ()
        x = torch.randn(*shape, 5, generator=g, dtype=torch.float64, requires_grad=True)
        h = torch.randn(*shape, 7, generator=g, dtype=torch.float64, requires_grad=True)
        out = _flat(m(x, (h, h * 0.5) if kind == "lstm" else h))
        (dx,) = torch.autograd.grad(sum((o * o).sum() for o in out), [x], create_graph=True)
        (dx * dx).sum().backward()
        got.append([x.grad, h.grad, *[p.grad for p in m.parameters()]])
    for a, b in zip(*got):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_differentiating_a_bf16_cells_gradient_again_fails_loudly():
    _, ours = _pair("gru", dtype=torch.float32)
    x = torch.randn(2, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (dx,) = torch.autograd.grad(ours(x).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported here"):
        dx.sum().backward()


@pytest.mark.parametrize("kind", list(PAIRS))
def test_a_tensor_left_behind_by_a_transform_and_a_torch_without_the_c_apply(kind, monkeypatch):
    """A training step enters CellFunction through torch's C++ apply, or Function.apply where
    torch lacks it: with either, a tensor a finished torch.func transform left behind (still a
    functorch wrapper) and a plain one give torch's cell's outputs and gradients."""
    from rnnfast.torch import _cells

    native, ours = _pair(kind, dtype=torch.float64)
    captured = []

    def keep(x):
        captured.append(x)
        return x.sum()

    torch.func.grad(keep)(torch.randn(3, 5, dtype=torch.float64))
    left_behind = captured[0]
    assert torch._C._functorch.is_functorch_wrapped_tensor(left_behind)
    fresh = torch.randn(3, 5, dtype=torch.float64)
    for c_apply in (_cells._C_APPLY, None):
        monkeypatch.setattr(_cells, "_C_APPLY", c_apply)
        for x in (left_behind, fresh):
            want, got = _flat(native(x)), _flat(ours(x))
            for w, g in zip(want, got):
                torch.testing.assert_close(g, w, **TOL[torch.float64])
            grads_want = torch.autograd.grad(sum(w.sum() for w in want), list(native.parameters()))
            grads_got = torch.autograd.grad(sum(g.sum() for g in got), list(ours.parameters()))
            for w, g in zip(grads_want, grads_got):
                torch.testing.assert_close(g, w, **TOL[torch.float64])
