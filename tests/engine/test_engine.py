"""The C++ stack driver's contracts. step() equals forward; the packed-weight cache is
never stale, whatever changes the parameters; tapes refuse parameters that changed; the cell
table is C++'s; memory is reused across calls."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, assert_close, make, make_pair, state_arrays

import rnnfast
from rnnfast import _core, init, optim, reference

# ---- step() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_step_by_step_is_bitwise_forward(cls, kw, batch, threads):
    threads(2)
    m = make(rnnfast, cls, kw, input_size=6, hidden_size=37, num_layers=2, seed=1)
    x = np.random.default_rng(0).standard_normal((9, batch, 6)).astype(np.float32)
    h0 = np.random.default_rng(1).standard_normal((2, batch, 37)).astype(np.float32)
    state0 = (h0, h0 * 0.5) if cls == "LSTM" else h0
    y, s_n = m(x, state0)
    st = None
    outs = []
    for t in range(9):
        yt, st = m.step(x[t], state0 if st is None else st)
        outs.append(yt.copy())
    assert np.stack(outs).tobytes() == y.tobytes()
    for a, b in zip(state_arrays(st.state), state_arrays(s_n)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_reference_step_matches_fast_step(cls, kw):
    fast, ref = make_pair(cls, kw, input_size=4, hidden_size=5, dtype=np.float64, seed=2)
    x = np.random.default_rng(0).standard_normal((6, 2, 4))
    sf = sr = None
    for t in range(6):
        yf, sf = fast.step(x[t], sf)
        yr, sr = ref.step(x[t], sr)
        np.testing.assert_allclose(yf, yr, rtol=1e-12, atol=1e-14)


def test_step_reuses_its_state_and_output():
    m = rnnfast.LSTM(3, 4, seed=0)
    st = m.step_state(2)
    h, c, y = st.h, st.c, st.y
    x = np.ones((2, 3), np.float32)
    for _ in range(3):
        out, st2 = m.step(x, st)
    assert st2 is st and st.h is h and st.c is c and out is y


def test_step_unbatched_and_from_arrays():
    m = rnnfast.GRU(3, 4, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    y_seq, _ = m(x[:, None, :])
    st = None
    for t in range(5):
        y, st = m.step(x[t], st)  # (I,): one sequence
        assert y.shape == (4,)
    np.testing.assert_array_equal(y, y_seq[-1, 0])
    y2, st2 = m.step(x[:2], np.zeros((2, 2, 4), np.float32))  # a state as forward takes it
    assert y2.shape == (2, 4) and isinstance(st2, rnnfast.StepState)
    y3, _ = m.step(x[:2].tolist())  # nested lists, rounded like torch.tensor
    np.testing.assert_array_equal(y3, y2)


def test_step_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"step: a bidirectional module needs the whole sequence"):
        rnnfast.LSTM(2, 3, bidirectional=True).step(np.zeros((1, 2), np.float32))
    m = rnnfast.RNN(2, 3)
    st = m.step_state(2)
    with pytest.raises(ValueError, match=r"state: for batch 2, x has batch 1"):
        m.step(np.zeros((1, 2), np.float32), st)
    with pytest.raises(ValueError, match=r"state: a StepState of another module"):
        rnnfast.RNN(2, 3).step(np.zeros((2, 2), np.float32), st)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 2\) or \(2,\), got \(1, 5\)"):
        m.step(np.zeros((1, 5), np.float32))
    with pytest.raises(TypeError, match=r"x: expected dtype float32"):
        m.step(np.zeros((1, 2)))


# ---- the packed-weight cache is never stale ----------------------------------------------------


def _change(how, m):
    """Changes m's parameters one way; returns a description."""
    rng = np.random.default_rng(len(how))
    if how == "assign":
        m.params["weight_hh_l0"] = rng.standard_normal(m.params["weight_hh_l0"].shape)
    elif how == "writable":
        with m.params.writable() as p:
            p["weight_hh_l0"] *= -1.5
            p["weight_ih_l0"][0, 0] = 3.0
    elif how == "load_state_dict":
        sd = m.state_dict()
        sd["weight_ih_l0"] = rng.standard_normal(sd["weight_ih_l0"].shape)
        m.load_state_dict(sd)
    elif how == "optimizer":
        y, _, tape = m.forward(np.ones((3, 2, 4), m.dtype))
        m.backward(tape, np.ones_like(y))
        optim.SGD(m, lr=0.5).step()
    elif how == "adam":
        y, _, tape = m.forward(np.ones((3, 2, 4), m.dtype))
        m.backward(tape, np.ones_like(y))
        optim.Adam(m, lr=0.1).step()
    elif how == "init":
        init.init_module(m, seed=5)
    elif how == "reset_parameters":
        m.reset_parameters(seed=9)


HOWS = ["assign", "writable", "load_state_dict", "optimizer", "adam", "init", "reset_parameters"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_every_way_of_changing_parameters_reaches_the_next_call(cls, kw, how):
    m = make(rnnfast, cls, kw, input_size=4, hidden_size=6, dtype=np.float64, seed=0)
    x = np.random.default_rng(3).standard_normal((5, 2, 4))
    m(x)  # packs (and caches) the weights
    st = m.step_state(2)
    m.step(x[0], st)
    _change(how, m)
    ref = make(reference, cls, kw, input_size=4, hidden_size=6, dtype=np.float64)
    ref.load_state_dict(m.state_dict())
    np.testing.assert_allclose(m(x)[0], ref(x)[0], rtol=1e-12, atol=1e-14)
    y, _ = m.step(x[0], m.step_state(2))
    np.testing.assert_allclose(y, ref(x[:1])[0][0], rtol=1e-12, atol=1e-14)


def test_writing_parameters_in_place_is_refused():
    m = rnnfast.LSTM(2, 3)
    with pytest.raises(ValueError, match=r"read-only"):
        m.params["weight_hh_l0"][...] = 0
    with pytest.raises(ValueError, match=r"read-only"):
        m.params["bias_ih_l0"] += 1


def test_inside_writable_every_call_sees_the_current_values():
    m = rnnfast.RNN(2, 3, dtype=np.float64, seed=0)
    x = np.ones((2, 1, 2))
    with m.params.writable() as p:
        first = m(x)[0].copy()
        p["weight_ih_l0"] *= 2  # no version change until the block ends
        second = m(x)[0]
    assert not np.array_equal(first, second)
    ref = reference.RNN(2, 3, dtype=np.float64)
    ref.load_state_dict(m.state_dict())
    np.testing.assert_allclose(second, ref(x)[0], rtol=1e-12)


@pytest.mark.parametrize("how", ["assign", "optimizer", "load_state_dict"])
def test_a_tape_refuses_parameters_changed_since_forward(how):
    m = rnnfast.GRU(4, 6, seed=0)
    y, _, tape = m.forward(np.ones((3, 2, 4), np.float32))
    _change(how, m)
    with pytest.raises(ValueError, match=r"tape: the parameters changed since the forward"):
        m.backward(tape, np.ones_like(y))


# ---- one source of truth, memory reuse ---------------------------------------------------------


def test_the_cell_table_comes_from_the_core():
    cells = _core.cells()
    assert {k: v["gates"] for k, v in cells.items()} == {
        "rnn_tanh": 1,
        "rnn_relu": 1,
        "lstm": 4,
        "gru": 3,
        "gru_reset_before": 3,
    }
    assert [k for k, v in cells.items() if v["cell_state"]] == ["lstm"]
    assert cells["gru"]["tape"] == ["gates", "hs", "extra"]
    for cls, kw in CELLS:
        m = make(rnnfast, cls, kw, input_size=2, hidden_size=3)
        assert m.params["weight_hh_l0"].shape[0] == cells[m.cell]["gates"] * 3


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_tape_size_is_what_tape_bytes_says(cls, kw):
    m = make(rnnfast, cls, kw, input_size=5, hidden_size=7, num_layers=2, bidirectional=True)
    _, _, tape = m.forward(np.ones((6, 3, 5), np.float32))
    assert tape.nbytes == m.tape_bytes(6, 3) > 0


# Gate rows of a multiple of 4 KiB (G*H*itemsize): the tape pads them (rnn/cell.h gates_stride).
ALIASED = [
    ("LSTM", {}, 256, np.float32),
    ("RNN", {"nonlinearity": "tanh"}, 1024, np.float32),
    ("LSTM", {}, 128, np.float64),
    ("GRU", {"linear_before_reset": True}, 1024, np.float32),  # 3H*4 = 12 KiB
    ("GRU", {"linear_before_reset": False}, 1024, np.float32),
]


@pytest.mark.parametrize(("cls", "kw", "hidden", "dtype"), ALIASED)
def test_padded_tape_rows_give_the_reference_gradients(cls, kw, hidden, dtype, threads):
    threads(2)
    fast, ref = make_pair(
        cls, kw, input_size=3, hidden_size=hidden, num_layers=1, dtype=dtype, seed=2
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 3))
    y, _, tape = fast.forward(x.astype(dtype), lengths=[4, 2, 3])
    gh = fast.params["weight_hh_l0"].shape[0]
    itemsize = np.dtype(dtype).itemsize
    padded = 16 if gh * itemsize % 4096 == 0 else 0
    states = 5 * 3 * hidden * (2 if cls == "LSTM" else 1)  # [T+1, B, H]: h (and c)
    extra = 4 * 3 * hidden if cls == "GRU" else 0
    values = 4 * 3 * 3 + 4 * 3 * (gh + padded) + states + extra  # x's copy, gates, states, extra
    assert tape.nbytes == fast.tape_bytes(4, 3) == values * itemsize
    y_ref, _, tape_ref = ref.forward(x, lengths=[4, 2, 3])
    dy = rng.standard_normal(y.shape)
    dx, _ = fast.backward(tape, dy.astype(dtype))
    dx_ref, _ = ref.backward(tape_ref, dy)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    assert_close(y, y_ref, rtol, "y")
    assert_close(dx, dx_ref, rtol, "dx")
    for name, g in ref.grads.items():
        assert_close(fast.grads[name], g, rtol, name)


def test_memory_is_reused_across_calls():
    m = rnnfast.LSTM(64, 128, seed=0)
    x = np.ones((20, 16, 64), np.float32)
    y, _, tape = m.forward(x)
    m.backward(tape, y)
    cached = m._stack.cached_bytes()
    assert cached >= m.tape_bytes(20, 16)  # the tape's memory went back to the pool
    for _ in range(5):
        y, _, tape = m.forward(x)
        m.backward(tape, y)
    assert m._stack.cached_bytes() == cached  # taken and given back: no growth
    m._stack.release_memory()
    assert m._stack.cached_bytes() == 0
    np.testing.assert_array_equal(m(x)[0], y)  # and it still works
