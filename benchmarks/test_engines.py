"""rnnfast, its NumPy reference and PyTorch on the default grid (rnnfast.cli.bench.DEFAULT_SIZES).

Run with `python -m pytest benchmarks` (add `--benchmark-disable` to only check that every case
runs). Each case's group holds the engines side by side; extra_info has rnnfast's GFLOP/s.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from rnnfast.cli.bench import CELLS, flops

ENGINES = ["rnnfast", "reference", "torch"]
MODES = ["inference", "training"]


def make_step(engine: str, cell: str, size: tuple[int, int, int], mode: str) -> Callable[[], Any]:
    steps, batch, hidden = size
    fast_cls, ref_cls, torch_name, _ = CELLS[cell]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    dy = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    if engine == "torch":
        torch = pytest.importorskip("torch")
        tm = getattr(torch.nn, torch_name)(hidden, hidden)
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        if mode == "inference":

            def torch_infer() -> None:
                with torch.no_grad():
                    tm(xt)

            return torch_infer
        xg = xt.clone().requires_grad_(True)

        def torch_train() -> None:
            tm.zero_grad()
            y, _ = tm(xg)
            y.backward(dyt)

        return torch_train
    m = (fast_cls if engine == "rnnfast" else ref_cls)(hidden, hidden, seed=0)
    if mode == "inference":
        return lambda: m(x)

    def train() -> None:
        m.zero_grad()
        _, _, tape = m.forward(x)
        m.backward(tape, dy)

    return train


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_engine(
    benchmark: Any, engine: str, cell: str, size: tuple[int, int, int], mode: str
) -> None:
    fn = make_step(engine, cell, size, mode)
    steps, batch, hidden = size
    benchmark.group = f"{cell} T={steps} B={batch} H={hidden} {mode}"
    work = flops(CELLS[cell][3], steps, batch, hidden, hidden) * (3 if mode == "training" else 1)
    benchmark.extra_info["gflop"] = work / 1e9
    benchmark.pedantic(fn, rounds=5 if engine == "reference" else 20, warmup_rounds=1)
