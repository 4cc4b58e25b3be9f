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
