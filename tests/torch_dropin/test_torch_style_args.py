"""Arguments as torch.nn takes them: positional constructor arguments in torch's order, and one
sequence given without its batch axis ((T, I) input, (num_layers*D, H) states)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import state_arrays

import rnnfast
from rnnfast import reference


@pytest.mark.parametrize(
    ("cls", "args", "attrs"),
    [
        ("RNN", (3, 4, 2, "relu", False, True, 0.5, True), dict(nonlinearity="relu")),
        ("LSTM", (3, 4, 2, False, True, 0.5, True, 2), dict(proj_size=2)),
        ("GRU", (3, 4, 2, False, True, 0.5, True), {}),
    ],
)
def test_positional_arguments_follow_torch(cls, args, attrs):
    m = getattr(rnnfast, cls)(*args)
    common = dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)
    for name, value in {**common, **attrs}.items():
        assert getattr(m, name) == value, name
    torch = pytest.importorskip("torch")
    tm = getattr(torch.nn, cls)(*args)
    assert {k: tuple(p.shape) for k, p in tm.named_parameters()} == {
        k: p.shape for k, p in m.params.items()
    }


def test_too_many_positional_arguments_are_refused():
    with pytest.raises(TypeError, match="at most 8 positional"):
        rnnfast.RNN(3, 4, 1, "tanh", True, False, 0.0, False, np.float64)
    with pytest.raises(TypeError, match="at most 7 positional"):
        rnnfast.GRU(3, 4, 1, True, False, 0.0, False, np.float64)
    with pytest.raises(TypeError):
        rnnfast.LSTM(3, 4, 1, True, False, 0.0, False, 0, np.float64)


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize(
    ("cls", "kw"),
    [("RNN", {}), ("LSTM", {"proj_size": 2}), ("GRU", {})],
    ids=["rnn", "lstmp", "gru"],
)
def test_one_sequence_without_a_batch_axis(engine, cls, kw):
    m = getattr(engine, cls)(3, 4, 2, bidirectional=True, batch_first=True, seed=0, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    s = m._state_size
    h0 = rng.standard_normal((4, s)).astype(np.float32)
    state = (h0, rng.standard_normal((4, 4)).astype(np.float32)) if cls == "LSTM" else h0
    y, s_n, tape = m.forward(x, state)
    assert y.shape == (5, 2 * s)
    batched_state = tuple(a[:, None] for a in state_arrays(state))
    yb, sb, tb = m.forward(x[None], batched_state if cls == "LSTM" else batched_state[0])
    np.testing.assert_array_equal(y, yb[0])
    for a, b in zip(state_arrays(s_n), state_arrays(sb)):
        np.testing.assert_array_equal(a, b[:, 0])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, ds0, grads = m.backward(tape, dy, return_state_grads=True)
    dxb, ds0b, gradsb = m.backward(tb, dy[None], return_state_grads=True)
    np.testing.assert_array_equal(dx, dxb[0])
    for a, b in zip(state_arrays(ds0), state_arrays(ds0b)):
        np.testing.assert_array_equal(a, b[:, 0])
    for a, b in zip(state_arrays(grads), state_arrays(gradsb)):
        np.testing.assert_array_equal(a, b[:, 0])
    y_call, _ = m(x)  # inference and indices too
    np.testing.assert_array_equal(y_call, m(x[None])[0][0])


def test_one_hot_indices_of_one_sequence():
    m = rnnfast.GRU(6, 4, seed=1)
    ids = np.array([0, 5, 2, 2, 1])
    y, h = m(ids, one_hot=True)
    yb, hb = m(ids[:, None], one_hot=True)
    np.testing.assert_array_equal(y, yb[:, 0])
    np.testing.assert_array_equal(h, hb[:, 0])


def test_unbatched_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, 2).double()
    m = rnnfast.LSTM(3, 4, 2, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((6, 3))
    yt, (ht, ct) = tm(torch.from_numpy(x))
    y, (h, c) = m(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert h.shape == tuple(ht.shape) and c.shape == tuple(ct.shape)


def test_bad_unbatched_states_and_gradients_are_refused():
    m = rnnfast.GRU(3, 4)
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"state: x is one sequence .* got shape \(1, 1, 4\)"):
        m(x, np.zeros((1, 1, 4), np.float32))
    _, _, tape = m.forward(x)
    with pytest.raises(ValueError, match="dy"):
        m.backward(tape, np.zeros((5, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"or 2 \(T, I\) for one sequence"):
        m(np.zeros(3, np.float32))
