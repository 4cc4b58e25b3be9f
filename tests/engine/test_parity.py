"""The C++ engine against the NumPy reference, forward and backward, over every feature."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, RTOL, assert_close, make_pair, state_arrays

from rnnfast import reference


def _run(module, x, state, lengths, dy, ds):
    module.zero_grad()
    y, s_n, tape = module.forward(x, state, lengths)
    dx, ds0 = module.backward(tape, dy, ds)
    return y, state_arrays(s_n), dx, state_arrays(ds0), dict(module.grads)


def _compare(fast, ref, x, state, lengths, dy, ds, rtol):
    got = _run(fast, x, state, lengths, dy, ds)
    to64 = (lambda a: a.astype(np.float64)) if x.dtype != np.float64 else (lambda a: a)
    state64 = tuple(to64(s) for s in state) if isinstance(state, tuple) else to64(state)
    ds64 = tuple(to64(s) for s in ds) if isinstance(ds, tuple) else to64(ds)
    want = _run(ref, to64(x), state64, lengths, to64(dy), ds64)
    assert_close(got[0], want[0], rtol, "y")
    for i, (a, b) in enumerate(zip(got[1], want[1])):
        assert_close(a, b, rtol, f"state_n[{i}]")
    assert_close(got[2], want[2], rtol, "dx")
    for i, (a, b) in enumerate(zip(got[3], want[3])):
        assert_close(a, b, rtol, f"dstate0[{i}]")
    for name in want[4]:
        assert_close(got[4][name], want[4][name], rtol, f"grads[{name}]")


def _inputs(cls, fast, steps, batch, rng):
    dtype = fast.dtype
    shape = (batch, steps, fast.input_size) if fast.batch_first else (steps, batch, fast.input_size)
    x = rng.standard_normal(shape).astype(dtype)
    nstate = fast.num_layers * fast.num_directions
    s_shape = (nstate, batch, fast._state_size)  # h's width: proj_size if set
    c_shape = (nstate, batch, fast.hidden_size)
    h0 = rng.standard_normal(s_shape).astype(dtype)
    state = (h0, rng.standard_normal(c_shape).astype(dtype)) if cls == "LSTM" else h0
    y_width = fast.num_directions * fast._state_size
    dy = rng.standard_normal((*shape[:2], y_width)).astype(dtype)
    dh = rng.standard_normal(s_shape).astype(dtype)
    ds = (dh, rng.standard_normal(c_shape).astype(dtype)) if cls == "LSTM" else dh
    return x, state, dy, ds


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbi", "bti"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_fast_matches_reference(
    cls, kw, num_layers, bidirectional, batch_first, with_lengths, dtype, nthreads, threads
):
    threads(nthreads)
    rng = np.random.default_rng(11)
    steps, batch = 6, 4
    fast, ref = make_pair(
        cls,
        kw,
        input_size=5,
        hidden_size=7,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        dtype=dtype,
        seed=5,
    )
    lengths = [6, 2, 5, 1] if with_lengths else None
    x, state, dy, ds = _inputs(cls, fast, steps, batch, rng)
    _compare(fast, ref, x, state, lengths, dy, ds, RTOL[np.dtype(dtype)])


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fast_matches_reference_at_sizes_that_span_kernel_blocks(cls, kw, dtype, threads):
    """Sizes past the GEMM's block edges (K > 256, N not a multiple of the tile) and 2 threads."""
    threads(2)
    rng = np.random.default_rng(3)
    fast, ref = make_pair(cls, kw, input_size=300, hidden_size=37, dtype=dtype, seed=2)
    x, state, dy, ds = _inputs(cls, fast, 9, 70, rng)
    _compare(fast, ref, x, state, [9 - i % 9 for i in range(70)], dy, ds, RTOL[np.dtype(dtype)])


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_reference_float32_matches_float64(cls, kw):
    """The reference itself runs in float32 within float32 accuracy."""
    rng = np.random.default_rng(5)
    m32 = getattr(reference, cls)(input_size=4, hidden_size=5, dtype=np.float32, seed=1, **kw)
    m64 = getattr(reference, cls)(input_size=4, hidden_size=5, dtype=np.float64, seed=1, **kw)
    m64.load_state_dict(m32.state_dict())
    x, state, dy, ds = _inputs(cls, m32, 5, 3, rng)
    _compare(m32, m64, x, state, None, dy, ds, 1e-5)


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize(("steps", "batch"), [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch_matches_reference(cls, kw, steps, batch):
    """T = 0 returns the initial state; B = 0 returns empty arrays; both engines agree."""
    rng = np.random.default_rng(0)
    fast, ref = make_pair(
        cls, kw, input_size=3, hidden_size=4, bidirectional=True, dtype=np.float64, seed=1
    )
    x, state, dy, ds = _inputs(cls, fast, steps, batch, rng)
    _compare(fast, ref, x, state, None, dy, ds, 1e-10)
    y, s_n = fast(x, state)
    assert y.shape == (steps, batch, 8)
    if steps == 0:
        for a, b in zip(state_arrays(s_n), state_arrays(state)):
            np.testing.assert_array_equal(a, b)
