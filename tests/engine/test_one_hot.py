"""One-hot input given by indices (`one_hot=True`): the same numbers as the one-hot rows, in both
engines, for every cell, layout and length; both ways of summing the first layer's weight
gradient (a vocabulary that fits the in-order sums, and one that does not); bad indices."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, RTOL, assert_close, make_pair

# 5000 symbols: above what the in-order per-(symbol, column) sums take (rows sorted by symbol).
VOCABS = [7, 5000]


def _states(state):
    return state if isinstance(state, tuple) else (state,)


def _check_against_rows(fast, ref, ids, lengths, dtype):
    """fast(ids) against the reference fed the one-hot rows themselves, forward and backward."""
    vocab = fast.input_size
    rows = np.eye(vocab)[ids]
    rng = np.random.default_rng(1)
    y, state, tape = fast.forward(ids, lengths=lengths, one_hot=True)
    y_ref, state_ref, tape_ref = ref.forward(rows, lengths=lengths)
    rtol = RTOL[np.dtype(dtype)]
    assert_close(y, y_ref, rtol, "y")
    for got, want in zip(_states(state), _states(state_ref)):
        assert_close(got, want, rtol, "final state")
    dy = rng.standard_normal(y.shape)
    dx, _ = fast.backward(tape, dy.astype(dtype))
    dx_ref, _ = ref.backward(tape_ref, dy)
    assert dx.shape == rows.shape  # the gradient with respect to the one-hot rows
    assert_close(dx, dx_ref, rtol, "dx")
    for name, g in ref.grads.items():
        assert_close(fast.grads[name], g, rtol, name)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_indices_match_one_hot_rows(cls, kw, dtype, vocab, threads):
    threads(2)
    fast, ref = make_pair(
        cls,
        kw,
        input_size=vocab,
        hidden_size=6,
        num_layers=2,
        bidirectional=True,
        dtype=dtype,
        seed=3,
    )
    ids = np.random.default_rng(0).integers(0, vocab, (7, 5))
    _check_against_rows(fast, ref, ids, [7, 2, 5, 1, 7], dtype)


@pytest.mark.parametrize("vocab", VOCABS)
def test_indices_batch_first_and_padding_of_every_symbol(vocab, threads):
    threads(2)
    fast, ref = make_pair(
        "LSTM", {}, input_size=vocab, hidden_size=9, batch_first=True, dtype=np.float64, seed=4
    )
    ids = np.random.default_rng(2).integers(0, vocab, (4, 6))  # (B, T)
    ids[1, 2:] = 0  # padding holds a symbol too: it must add nothing to its column
    y, _, tape = fast.forward(ids, lengths=[6, 2, 6, 3], one_hot=True)
    y_ref, _, tape_ref = ref.forward(np.eye(vocab)[ids], lengths=[6, 2, 6, 3])
    assert_close(y, y_ref, 1e-10, "y")
    dy = np.random.default_rng(3).standard_normal(y.shape)
    fast.backward(tape, dy)
    ref.backward(tape_ref, dy)
    for name, g in ref.grads.items():
        assert_close(fast.grads[name], g, 1e-10, name)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_indices_give_the_bits_of_the_rows_in_the_fast_engine(cls, kw, vocab, threads):
    """Forward is exactly the rows' (a copy of weight columns is the product with a one-hot row);
    gradients agree to rounding (the rows' product sums in blocks)."""
    threads(2)
    import rnnfast

    a = getattr(rnnfast, cls)(vocab, 8, 2, seed=5, **kw)
    b = getattr(rnnfast, cls)(vocab, 8, 2, seed=5, **kw)
    ids = np.random.default_rng(6).integers(0, vocab, (9, 3))
    y_ids, s_ids, tape_ids = a.forward(ids, one_hot=True)
    y_rows, s_rows, tape_rows = b.forward(np.eye(vocab, dtype=np.float32)[ids])
    assert y_ids.tobytes() == y_rows.tobytes()
    for got, want in zip(_states(s_ids), _states(s_rows)):
        assert got.tobytes() == want.tobytes()
    dy = np.random.default_rng(7).standard_normal(y_ids.shape).astype(np.float32)
    a.backward(tape_ids, dy, input_grad=False)
    b.backward(tape_rows, dy, input_grad=False)
    for name in a.grads:
        assert_close(a.grads[name], b.grads[name].astype(np.float64), 1e-5, name)


def test_indices_are_deterministic_across_threads(threads):
    import rnnfast

    results = []
    for count in (1, 2, 3):
        threads(count)
        m = rnnfast.LSTM(50, 64, seed=8)
        ids = np.random.default_rng(9).integers(0, 50, (40, 30))
        y, _, tape = m.forward(ids, one_hot=True)
        m.backward(tape, np.ones_like(y), input_grad=False)
        results.append(y.tobytes() + b"".join(g.tobytes() for g in m.grads.values()))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_inference_and_step_take_indices(cls, kw, threads):
    threads(2)
    import rnnfast

    m = getattr(rnnfast, cls)(11, 7, 2, seed=1, **kw)
    ids = np.random.default_rng(4).integers(0, 11, (6, 3))
    y, _ = m(ids, one_hot=True)
    y_rows, _ = m(np.eye(11, dtype=np.float32)[ids])
    assert y.tobytes() == y_rows.tobytes()
    state = None
    for t in range(6):
        out, state = m.step(ids[t], state, one_hot=True)
        assert out.tobytes() == y[t].tobytes()
    single = None
    for t in range(6):  # one sequence: one integer a step
        out, single = m.step(int(ids[t, 1]), single, one_hot=True)
        np.testing.assert_array_equal(out, y[t, 1])


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((3, 2)), TypeError, r"x: with one_hot=True expected integer indices \(T, B\)"),
        (np.zeros((3, 2), bool), TypeError, r"integer indices \(T, B\), got dtype bool"),
        (np.zeros((3, 2, 1), int), ValueError, r"expected indices \(T, B\), got 3 dimensions"),
        (np.full((3, 2), 5), ValueError, r"x: expected indices in \[0, 5\) \(input_size\)"),
        (np.full((3, 2), -1), ValueError, r"got -1 at \(0, 0\)"),
        (np.array([[2**63]], np.uint64), ValueError, r"got 9223372036854775808 at \(0, 0\)"),
    ],
)
def test_bad_indices_are_refused(x, error, message):
    import rnnfast

    m = rnnfast.GRU(5, 3)
    with pytest.raises(error, match=message):
        m.forward(x, one_hot=True)


def test_bad_step_indices_and_flag_are_refused():
    import rnnfast

    m = rnnfast.LSTM(5, 3)
    with pytest.raises(ValueError, match=r"expected indices \(B,\), got 2 dimensions"):
        m.step(np.zeros((2, 2), int), one_hot=True)
    with pytest.raises(TypeError, match=r"expected integer indices \(B,\), got dtype float64"):
        m.step(1.0, one_hot=True)
    with pytest.raises(ValueError, match=r"x: expected indices in \[0, 5\)"):
        m.step(np.array([0, 5]), one_hot=True)
    with pytest.raises(TypeError, match="one_hot: expected True or False, got 1"):
        m(np.zeros((2, 2), int), one_hot=1)


def test_the_core_checks_indices_itself():
    """The binding refuses an index out of range even if a caller skipped the Python checks."""
    import rnnfast

    m = rnnfast.LSTM(5, 3)
    with pytest.raises(ValueError, match=r"x: expected indices in \[0, 5\), got 7 at flat index 3"):
        m._stack.forward(np.array([[0, 1], [2, 7]], np.int64), None, None, None, False, 0)
    with pytest.raises(ValueError, match=r"x: expected indices in \[0, 5\), got -2"):
        m._stack.step(
            np.array([-2], np.int64),
            m.step_state(1).h,
            m.step_state(1).c,
            np.zeros((1, 3), np.float32),
            0,
        )


def test_indices_are_not_modified_and_the_tape_owns_a_copy():
    import rnnfast

    m = rnnfast.RNN(6, 4, seed=2)
    ids = np.random.default_rng(5).integers(0, 6, (5, 2))
    keep = ids.copy()
    y, _, tape = m.forward(ids, one_hot=True)
    np.testing.assert_array_equal(ids, keep)
    # The tape holds the indices (int64), not rows of input_size floats.
    assert tape.nbytes == m.tape_bytes(5, 2) - 5 * 2 * 6 * 4 + 5 * 2 * 8
    ids[...] = 0  # the caller reuses its array before backward
    m.backward(tape, np.ones_like(y))
    ref = rnnfast.RNN(6, 4, seed=2)
    y2, _, tape2 = ref.forward(keep, one_hot=True)
    ref.backward(tape2, np.ones_like(y2))
    for name in m.grads:
        assert m.grads[name].tobytes() == ref.grads[name].tobytes()
