"""Bitwise reproducibility: the same bytes run after run and for 1 or 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, make, state_arrays

import rnnfast


def _outputs(m, x, lengths, dy):
    m.zero_grad()
    y, s_n, tape = m.forward(x, None, lengths)
    dx, ds0 = m.backward(tape, dy, s_n)
    return [y, *state_arrays(s_n), dx, *state_arrays(ds0), *m.grads.values()]


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_bitwise_identical_across_runs_and_thread_counts(cls, kw, threads):
    # Large enough that the GEMMs and packing really split across threads.
    m = make(
        rnnfast, cls, kw, input_size=96, hidden_size=128, num_layers=2, bidirectional=True, seed=4
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 48, 96)).astype(np.float32)
    dy = rng.standard_normal((12, 48, 256)).astype(np.float32)
    lengths = list(rng.integers(1, 13, size=48))
    runs = []
    for n in (1, 2, 2, 1):
        threads(n)
        runs.append(_outputs(m, x, lengths, dy))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.tobytes() == b.tobytes()


# Sizes that put the recurrence in each threading mode on 2 threads (asserted below, so a change
# of heuristic cannot silently leave a mode untested). H = 130 gives uneven unit slices (72, 58).
# T spans more than one chunk of the input projection (256 // B steps) in every mode. A team
# owning units meets mid-step by flags and sums each product in two blocks
# (src/cpp/rnn/layer_forward.cpp, forward_in_parts): "one row" is the B = 1 case it is for.
MODES = {
    "units": dict(batch=3, hidden=130, steps=90),
    "one row": dict(batch=1, hidden=200, steps=300, mode="units"),
    "rows": dict(batch=40, hidden=64, steps=9),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_each_threading_mode_matches_reference_and_one_thread(cls, kw, mode, threads):
    from conftest import assert_close, make_pair

    from rnnfast import _core

    size = MODES[mode]
    fast, ref = make_pair(
        cls,
        kw,
        input_size=24,
        hidden_size=size["hidden"],
        bidirectional=True,
        dtype=np.float64,
        seed=9,
    )
    threads(2)
    plan = _core.recurrence_plan(
        fast.cell, size["steps"], size["batch"], 24, size["hidden"], "float64"
    )
    assert plan == (2, size.get("mode", mode))
    rng = np.random.default_rng(2)
    steps = size["steps"]
    assert steps > 256 // size["batch"]
    x = rng.standard_normal((steps, size["batch"], 24))
    dy = rng.standard_normal((steps, size["batch"], 2 * size["hidden"]))
    lengths = [steps - (i % 4) for i in range(size["batch"])]

    def inference(m):  # no tape: the chunked projection and the states' two buffers
        y, s_n, _ = m.forward(x, None, lengths, training=False)
        return [y, *state_arrays(s_n)]

    two = _outputs(fast, x, lengths, dy) + inference(fast)
    threads(1)
    one = _outputs(fast, x, lengths, dy) + inference(fast)
    for a, b in zip(two, one):
        assert a.tobytes() == b.tobytes()
    want = _outputs(ref, x, lengths, dy) + inference(ref)
    for i, (a, b) in enumerate(zip(two, want)):
        assert_close(a, b, 1e-10, f"output {i}")


def test_rows_from_fewer_rows_when_w_hh_fits_in_l2(threads):
    """rnn/plan.cpp: a thread that can keep all of W_hh in its own L2 owns rows of the batch from
    4 rows on (8 when W_hh fills up to half of L2); beyond that, from 12."""
    from rnnfast import _core

    threads(2)
    l2 = _core.l2_cache_bytes()
    assert l2 >= 64 * 1024

    def plan(batch, hidden, dtype="float32"):
        return _core.recurrence_plan("lstm", 50, batch, hidden, hidden, dtype)

    quarter = int((l2 / 4 / 16) ** 0.5)  # LSTM float32: 16 H^2 bytes of W_hh
    assert 16 * quarter**2 <= l2 // 4
    assert plan(8, quarter) == (2, "rows")
    assert plan(7, quarter) == (2, "units")
    # The same H in float64 is twice the bytes: within half of L2, so 8 rows a thread.
    assert plan(16, quarter, "float64") == (2, "rows")
    assert plan(15, quarter, "float64") == (2, "units")
    beyond = int((l2 / 2 / 16) ** 0.5) + 16
    assert plan(23, beyond) == (2, "units")
    assert plan(24, beyond) == (2, "rows")


def test_amx_bf16_splits_units_only_for_whole_tiles_of_work(threads):
    """rnn/plan.cpp: an AMX tile costs the same for 1 to 16 rows, so a bf16 recurrence under
    avx512_amx splits units between threads only when each gets 48,000 multiply-adds of whole
    tiles a step; owning rows and every other ISA or precision plan as float32 does."""
    from rnnfast import _core

    threads(2)

    def plan(batch, hidden, precision):
        return _core.recurrence_plan("lstm", 50, batch, hidden, hidden, "float32", precision)

    for batch, hidden in [(1, 128), (1, 154), (4, 128), (1, 155), (3, 256), (8, 128), (40, 64)]:
        fp32 = plan(batch, hidden, "fp32")
        bf16 = plan(batch, hidden, "bf16")
        if rnnfast.isa() != "avx512_amx" or fp32[1] == "rows":
            assert bf16 == fp32, (batch, hidden)
        else:  # 4 H^2 a tile of rows: two threads from 4 * 155^2 >= 2 * 48,000
            assert bf16 == ((2, "units") if hidden >= 155 else (1, "rows")), (batch, hidden)
    assert plan(1, 128, "fp32") == (2, "units")
    with pytest.raises(ValueError, match="precision"):
        _core.recurrence_plan("lstm", 50, 1, 128, 128, "float64", "bf16")
    with pytest.raises(ValueError, match="precision"):
        plan(1, 128, "fp16")
