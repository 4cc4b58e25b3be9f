"""LSTM with a projection (proj_size, LSTMP): h_t = W_hr (o * tanh(c_t)), as torch.nn.LSTM.

The reference is checked by finite differences, the C++ engine against the reference over every
feature (layers, directions, lengths, threads, dtypes, one-hot input, step), and both against
PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RTOL, check_gradients_by_finite_differences, make_pair
from test_parity import _compare, _inputs

import rnnfast
from rnnfast import reference


def _lstmp(engine, **kw):
    return engine.LSTM(**{"input_size": 3, "hidden_size": 4, "proj_size": 2, "seed": 3, **kw})


@pytest.mark.parametrize(
    "cfg",
    [
        dict(num_layers=1, bidirectional=False, bias=True, lengths=None),
        dict(num_layers=1, bidirectional=False, bias=False, lengths=None),
        dict(num_layers=2, bidirectional=True, bias=True, lengths=[3, 1]),
    ],
    ids=["plain", "no_bias", "deep_bi_lengths"],
)
def test_reference_gradients_match_finite_differences(cfg):
    cfg = dict(cfg)
    lengths = cfg.pop("lengths")
    m = _lstmp(reference, dtype=np.float64, **cfg)
    with m.params.writable() as params:  # larger weights exercise the saturations
        for p in params.values():
            p *= 2.0
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 3))
    layers = m.num_layers * m.num_directions
    state = (rng.standard_normal((layers, 2, 2)), rng.standard_normal((layers, 2, 4)))
    assert m.forward(x, state, lengths)[0].shape == (3, 2, 2 * m.num_directions)
    assert any(name.startswith("weight_hr") for name in m.grads)
    check_gradients_by_finite_differences(m, x, state, lengths)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
def test_fast_matches_reference(
    num_layers, bidirectional, batch_first, with_lengths, dtype, nthreads, threads
):
    threads(nthreads)
    fast, ref = make_pair(
        "LSTM",
        {"proj_size": 3},
        input_size=5,
        hidden_size=7,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        dtype=dtype,
        seed=5,
    )
    x, state, dy, ds = _inputs("LSTM", fast, 6, 4, np.random.default_rng(11))
    lengths = [6, 2, 5, 1] if with_lengths else None
    _compare(fast, ref, x, state, lengths, dy, ds, RTOL[np.dtype(dtype)])


@pytest.mark.parametrize(
    ("steps", "batch", "hidden", "proj"),
    [(9, 70, 300, 37), (12, 1, 520, 130), (5, 3, 64, 63), (4, 2, 2, 1)],
    ids=["blocks", "single_sequence_units", "proj_h_minus_1", "tiny"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fast_matches_reference_at_sizes_of_every_kernel_path(
    steps, batch, hidden, proj, dtype, threads
):
    """Block edges of the GEMMs, the single-sequence (per-unit) recurrence, widths 1 and H-1."""
    threads(2)
    fast, ref = make_pair(
        "LSTM", {"proj_size": proj}, input_size=33, hidden_size=hidden, num_layers=2, dtype=dtype
    )
    x, state, dy, ds = _inputs("LSTM", fast, steps, batch, np.random.default_rng(4))
    lengths = [steps - i % steps for i in range(batch)]
    _compare(fast, ref, x, state, lengths, dy, ds, RTOL[np.dtype(dtype)])


def test_results_are_bitwise_equal_across_threads(threads):
    results = []
    for count in (1, 2, 3):
        threads(count)
        m = rnnfast.LSTM(20, 96, 2, proj_size=40, bidirectional=True, seed=8)
        x = np.random.default_rng(9).standard_normal((15, 6, 20)).astype(np.float32)
        y, (h, _c), tape = m.forward(x, lengths=[15, 3, 9, 15, 1, 8])
        m.backward(tape, np.ones_like(y))
        results.append(y.tobytes() + h.tobytes() + b"".join(g.tobytes() for g in m.grads.values()))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_step_and_one_hot_match_forward(engine):
    m = engine.LSTM(11, 9, 2, proj_size=4, dtype=np.float64, seed=1)
    ids = np.random.default_rng(4).integers(0, 11, (6, 3))
    y, (h, c) = m(ids, one_hot=True)
    y_rows, (_h_rows, _c_rows) = m(np.eye(11)[ids])
    np.testing.assert_allclose(y, y_rows, rtol=1e-13, atol=1e-15)
    state = m.step_state(3)
    assert state.h.shape == (2, 3, 4) and state.c.shape == (2, 3, 9) and state.y.shape == (3, 4)
    for t in range(6):
        out, state = m.step(ids[t], state, one_hot=True)
        np.testing.assert_allclose(out, y[t], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state.h, h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state.c, c, rtol=1e-13, atol=1e-15)


def test_parameters_have_torch_names_and_shapes_and_init_covers_them():
    m = rnnfast.LSTM(5, 8, 2, proj_size=3, bidirectional=True)
    shapes = {k: p.shape for k, p in m.params.items()}
    assert shapes["weight_ih_l0"] == (32, 5)
    assert shapes["weight_hh_l0"] == (32, 3)
    assert shapes["weight_hr_l0"] == (3, 8)
    assert shapes["weight_ih_l1_reverse"] == (32, 6)
    assert list(shapes)[:5] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_hr_l0",
    ]
    assert "proj_size=3" in repr(m)
    before = m.state_dict()
    rnnfast.init.init_module(m, seed=0)  # weight_hr is initialised as a plain (ungated) matrix
    assert not np.array_equal(before["weight_hr_l0"], m.params["weight_hr_l0"])
    assert m.tape_bytes(10, 4) > 0


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        (dict(proj_size=8), ValueError, r"proj_size: expected 0 <= proj_size < hidden_size \(8\)"),
        (dict(proj_size=-1), ValueError, "proj_size"),
        (dict(proj_size=2.5), TypeError, "proj_size"),
    ],
)
def test_bad_proj_size_is_refused(kw, error, message):
    with pytest.raises(error, match=message):
        rnnfast.LSTM(4, 8, **kw)


def test_states_of_the_wrong_width_are_refused():
    m = rnnfast.LSTM(4, 8, proj_size=3)
    x = np.zeros((2, 5, 4), np.float32)
    h_full = np.zeros((1, 5, 8), np.float32)
    c = np.zeros((1, 5, 8), np.float32)
    with pytest.raises(ValueError, match=r"state\[h\].*\(num_layers\*D, B, proj_size\)"):
        m(x, (h_full, c))
    with pytest.raises(ValueError, match=r"state\[c\].*\(num_layers\*D, B, H\)"):
        m(x, (np.zeros((1, 5, 3), np.float32), np.zeros((1, 5, 3), np.float32)))
    y, (h, c_n), tape = m.forward(x)
    assert y.shape == (2, 5, 3) and h.shape == (1, 5, 3) and c_n.shape == (1, 5, 8)
    with pytest.raises(ValueError, match="dy"):
        m.backward(tape, np.zeros((2, 5, 8), np.float32))
    for core_args in [((1, 5, 8), (1, 5, 8)), ((1, 5, 3), (1, 5, 3))]:  # the core checks too
        h0, c0 = (np.zeros(s, np.float32) for s in core_args)
        with pytest.raises(ValueError):
            m._stack.forward(x, h0, c0, None, False, 0)


def test_matches_pytorch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    opts = dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=3)
    tm = torch.nn.LSTM(4, 6, **opts).double()
    m = rnnfast.LSTM(4, 6, **opts, dtype=np.float64)
    m.load_state_dict({k: t.detach().numpy() for k, t in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4))
    state = (rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 3, 6)))
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state)
    yt, (ht, ct) = tm(xt, st)
    dy, dh, dc = (rng.standard_normal(tuple(t.shape)) for t in (yt, ht, ct))
    (
        (yt * torch.tensor(dy)).sum()
        + (ht * torch.tensor(dh)).sum()
        + (ct * torch.tensor(dc)).sum()
    ).backward()

    y, (h, _c), tape = m.forward(x, state)
    dx, (dh0, dc0) = m.backward(tape, dy, (dh, dc))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, ht.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0, st[0].grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dc0, st[1].grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(
            m.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )
