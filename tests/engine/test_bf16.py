"""precision="bf16": the engine's bfloat16 products against the float64 NumPy reference, within
the error bound the `precision` docstring states; bits independent of threads and batch; fp32
untouched; refusals by name. (Run again under every other ISA by test_isa.py.)"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, digests_under_isas, make_pair, state_arrays

import rnnfast
from rnnfast import reference

U = 2.0**-8  # bfloat16's unit roundoff (8 significant bits)
NORM_BOUND = 4 * U  # |err| / |ref|, norm-wise over an array (measured: <= 1.8 U)


def max_bound(reduction: int) -> float:
    """max |err| / max |ref| allowed, growing with log2 of the longest reduction of the call
    (max(I, H, T*B)), as oneDNN's benchdnn bounds reduced precision (measured: 2 U at 60, 4.6 U
    at 1088)."""
    return (2 + np.log2(reduction)) * U


# ReLU's derivative jumps where a pre-activation crosses zero; bf16 moves pre-activations by
# about U |a|, so a few units near zero flip between gradient and none. Its backward gets a
# looser norm-wise bound (measured: <= 0.11 over the grid below), still far from a wrong sum.
RELU_GRAD_BOUND = 0.25


def _run(module, x, lengths, dy_seed=2):
    module.zero_grad()
    y, s_n, tape = module.forward(x, None, lengths)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
    dx, _ = module.backward(tape, dy)
    grads = {k: v.copy() for k, v in module.grads.items()}
    return {"y": y, **{f"state_n[{i}]": s for i, s in enumerate(state_arrays(s_n))}}, {
        "dx": dx,
        **grads,
    }


def _rel(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    scale = float(np.linalg.norm(b))
    norm = float(np.linalg.norm(a - b)) / scale if scale else float(np.linalg.norm(a))
    peak = float(np.abs(b).max()) if b.size else 0.0
    worst = float(np.abs(a - b).max()) / peak if peak else float(np.abs(a).max(initial=0.0))
    return norm, worst


@pytest.mark.parametrize("steps", [1, 10, 60])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_bf16_within_bound_of_float64_reference(cls, kw, num_layers, bidirectional, steps):
    fast, ref = make_pair(
        cls,
        kw,
        input_size=24,
        hidden_size=37,
        num_layers=num_layers,
        bidirectional=bidirectional,
        seed=3,
    )
    fast.precision = "bf16"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, 5, 24)).astype(np.float32)
    lengths = rng.integers(1, steps + 1, 5)
    got_fwd, got_bwd = _run(fast, x, lengths)
    want_fwd, want_bwd = _run(ref, x.astype(np.float64), lengths)
    _check_bound(kw, got_fwd, got_bwd, want_fwd, want_bwd, max(24, 37, steps * 5))


def _check_bound(kw, got_fwd, got_bwd, want_fwd, want_bwd, reduction):
    relu = kw.get("nonlinearity") == "relu"
    bound = max_bound(reduction)
    for name, want in want_fwd.items():
        norm, worst = _rel(got_fwd[name], want)
        assert norm <= NORM_BOUND and worst <= bound, f"{name}: {norm:.2e}, {worst:.2e}"
    for name, want in want_bwd.items():
        norm, worst = _rel(got_bwd[name], want)
        if relu:
            assert norm <= RELU_GRAD_BOUND, f"{name}: {norm:.2e}"
        else:
            assert norm <= NORM_BOUND and worst <= bound, f"{name}: {norm:.2e}, {worst:.2e}"


@pytest.mark.parametrize(("input_size", "hidden"), [(1024, 64), (512, 300)])
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_bf16_bound_holds_for_long_reductions(cls, kw, input_size, hidden):
    fast, ref = make_pair(cls, kw, input_size=input_size, hidden_size=hidden, seed=3)
    fast.precision = "bf16"
    x = np.random.default_rng(1).standard_normal((10, 8, input_size)).astype(np.float32)
    got_fwd, got_bwd = _run(fast, x, None)
    want_fwd, want_bwd = _run(ref, x.astype(np.float64), None)
    _check_bound(kw, got_fwd, got_bwd, want_fwd, want_bwd, max(input_size, hidden, 80))


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_bf16_is_not_fp32(cls, kw):
    """The products really are rounded: fp32 and bf16 differ by about U, not by float32's eps."""
    fast, _ = make_pair(cls, kw, input_size=24, hidden_size=37, seed=3)
    x = np.random.default_rng(1).standard_normal((10, 5, 24)).astype(np.float32)
    y32, _ = fast(x)
    fast.precision = "bf16"
    y16, _ = fast(x)
    norm, _ = _rel(y16, y32.astype(np.float64))
    assert U / 16 < norm < NORM_BOUND


@pytest.mark.parametrize(
    ("cls", "kw"), [*CELLS, ("LSTM", {"proj_size": 5})], ids=[*CELL_IDS, "lstm_proj"]
)
def test_bf16_bits_do_not_depend_on_threads_or_batch(cls, kw, threads):
    m = getattr(rnnfast, cls)(24, 40, num_layers=2, seed=4, precision="bf16", **kw)
    x = np.random.default_rng(5).standard_normal((7, 33, 24)).astype(np.float32)
    runs = []
    for n in (1, 2):
        threads(n)
        fwd, bwd = _run(m, x, None)
        runs.append((fwd, bwd))
    for part in (0, 1):
        for name, a in runs[0][part].items():
            np.testing.assert_array_equal(a, runs[1][part][name], err_msg=name)
    y_one, _ = m(x[:, 3:4])  # one row alone: the same bits as inside the batch
    np.testing.assert_array_equal(y_one[:, 0], runs[0][0]["y"][:, 3])


# Sizes whose bf16 recurrence splits units between 2 threads on every ISA (on AMX tiles a thread
# needs a whole tile's worth of units: rnn/plan.cpp), asserted so that the test cannot go vacuous.
_UNITS_SPLIT = {"RNN": 340, "GRU": 200, "LSTM": 200}


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_bf16_bits_do_not_depend_on_threads_when_units_are_split(cls, kw, threads):
    from rnnfast import _core

    hidden, batch, steps = _UNITS_SPLIT[cls], 3, 6
    m = getattr(rnnfast, cls)(16, hidden, seed=4, precision="bf16", **kw)
    threads(2)
    assert _core.recurrence_plan(m.cell, steps, batch, 16, hidden, "float32", "bf16") == (
        2,
        "units",
    )
    x = np.random.default_rng(5).standard_normal((steps, batch, 16)).astype(np.float32)
    runs = []
    for n in (1, 2):
        threads(n)
        runs.append(_run(m, x, [6, 4, 5]))
    for part in (0, 1):
        for name, a in runs[0][part].items():
            np.testing.assert_array_equal(a, runs[1][part][name], err_msg=name)


def test_bf16_step_matches_sequence():
    m = rnnfast.LSTM(16, 24, num_layers=2, seed=6, precision="bf16")
    x = np.random.default_rng(7).standard_normal((5, 3, 16)).astype(np.float32)
    y, _ = m(x)
    state = m.step_state(3)
    for t in range(5):
        m.step(x[t], state)
        np.testing.assert_array_equal(state.y, y[t])


def test_fp32_bits_unchanged_by_a_bf16_call():
    m = rnnfast.GRU(16, 24, seed=8)
    fresh = rnnfast.GRU(16, 24, seed=8)
    x = np.random.default_rng(9).standard_normal((6, 4, 16)).astype(np.float32)
    m.precision = "bf16"
    m(x)
    m.precision = "fp32"
    np.testing.assert_array_equal(m(x)[0], fresh(x)[0])


def test_tape_keeps_the_precision_of_its_forward():
    m = rnnfast.LSTM(16, 24, seed=10, precision="bf16")
    twin = rnnfast.LSTM(16, 24, seed=10, precision="bf16")
    x = np.random.default_rng(11).standard_normal((6, 4, 16)).astype(np.float32)
    dy = np.ones((6, 4, 24), np.float32)
    _, _, tape = m.forward(x)
    m.precision = "fp32"  # between forward and backward
    dx, _ = m.backward(tape, dy)
    _, _, tape2 = twin.forward(x)
    dx2, _ = twin.backward(tape2, dy)
    np.testing.assert_array_equal(dx, dx2)
    np.testing.assert_array_equal(m.grads["weight_hh_l0"], twin.grads["weight_hh_l0"])


def test_precision_survives_pickle_and_repr():
    m = rnnfast.GRU(8, 12, seed=1, precision="bf16")
    assert "precision='bf16'" in repr(m)
    back = pickle.loads(pickle.dumps(m))
    assert back.precision == "bf16"
    x = np.ones((3, 2, 8), np.float32)
    np.testing.assert_array_equal(back(x)[0], m(x)[0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rnnfast.LSTM(4, 8, dtype=np.float64, precision="bf16"), "needs a float32 module"),
        (lambda: rnnfast.LSTM(4, 8, precision="fp16"), "expected 'fp32' or 'bf16', got 'fp16'"),
        (lambda: reference.GRU(4, 8, precision="bf16"), "computes in its dtype only"),
    ],
)
def test_bad_precision_is_refused_by_name(make, message):
    with pytest.raises(ValueError, match="precision") as info:
        make()
    assert message in str(info.value)


def test_refused_precision_leaves_the_module_as_it_was():
    m = rnnfast.RNN(4, 8, seed=2, precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        m.precision = "half"
    assert m.precision == "bf16"


def test_core_refuses_bad_precision_by_name():
    m = rnnfast.RNN(4, 8, seed=2, dtype=np.float64)
    x = np.ones((2, 1, 4))
    with pytest.raises(ValueError, match="precision: 'bf16' needs a float32 module"):
        m._stack.forward(x, None, None, None, False, -1, 0.0, 0, "bf16")
    with pytest.raises(ValueError, match="precision: expected 'fp32' or 'bf16', got 'int8'"):
        m._stack.forward(x, None, None, None, False, -1, 0.0, 0, "int8")


def test_bf16_training_reaches_the_fp32_loss():
    """A short Adam run of a sequence-sum task in each precision: bf16 lands within 25% of the
    float32 run's final loss (both far below the loss at the start)."""
    losses = {}
    rng = np.random.default_rng(12)
    x = rng.standard_normal((20, 16, 4)).astype(np.float32)
    target = np.cumsum(x[..., :1], axis=0) / 4
    for precision in ("fp32", "bf16"):
        m = rnnfast.LSTM(4, 16, seed=13, precision=precision)
        head = np.random.default_rng(14).standard_normal((16, 1)).astype(np.float32) * 0.1
        opt = rnnfast.optim.Adam(m, lr=0.02)
        first = last = 0.0
        for it in range(150):
            y, _, tape = m.forward(x)
            err = y @ head - target
            loss = float(np.mean(err**2))
            first = loss if it == 0 else first
            last = loss
            m.zero_grad()
            m.backward(tape, (2 * err / err.size) @ head.T)
            opt.step()
        losses[precision] = (first, last)
    (f32_first, f32_last), (_, b16_last) = losses["fp32"], losses["bf16"]
    assert f32_last < 0.2 * f32_first
    assert abs(b16_last - f32_last) <= 0.25 * f32_last, losses


_DIGEST = """
import hashlib, numpy as np, rnnfast
out = []
for cls, kw in [("LSTM", {}), ("GRU", {}), ("GRU", {"linear_before_reset": False}), ("RNN", {}),
                ("LSTM", {"proj_size": 7})]:
    m = getattr(rnnfast, cls)(33, 41, num_layers=2, seed=1, precision="bf16", **kw)
    for batch in (1, 9):
        x = np.random.default_rng(0).standard_normal((9, batch, 33)).astype(np.float32)
        m.zero_grad()
        y, _, tape = m.forward(x)
        dx, _ = m.backward(tape, np.ones_like(y))
        out += [y.tobytes(), dx.tobytes(), *(g.tobytes() for g in m.grads.values())]
print(hashlib.sha256(b"".join(out)).hexdigest())
"""


@pytest.mark.skipif("RNNFAST_ISA" in os.environ, reason="already running under a forced ISA")
def test_bf16_bits_equal_across_simd_isas():
    """vdpbf16ps (avx512_bf16) and the widening kernels (avx512, avx2) add each pair the same
    way (kernels/bf16.h), so these ISAs give the same bits. (generic differs in fp32 as well: it
    has no fused multiply-add; avx512_amx's tiles add a pair's products their own way, and are
    checked against the bound and for thread independence like the others.)"""
    isas = [
        i for i in ("avx512_bf16", "avx512", "avx2") if i in rnnfast.show_config()["supported_isas"]
    ]
    if len(isas) < 2:
        pytest.skip(f"one SIMD ISA here ({isas})")
    digests = digests_under_isas(_DIGEST, isas)
    assert len(set(digests.values())) == 1, digests
