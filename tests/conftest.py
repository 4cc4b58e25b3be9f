"""Shared helpers: fast/reference module pairs with equal weights, a scale-aware comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rnnfast
from rnnfast import _cells, reference

# Every call on the whole team (runtime/threads.h CallTeam): tests compare thread counts with
# calls that come after the reference's NumPy work, which the engine takes for a pause before a
# small call and runs alone. (Read at the first engine call; subprocesses inherit it.)
os.environ.setdefault("RNNFAST_ALWAYS_TEAM", "1")

# (class name, constructor keywords): every cell and variant of the registry (rnnfast._cells,
# checked against the C++ core by test_package_structure.py).
CELLS = [(kind.module, dict(kind.kwargs)) for kind in _cells.CELLS.values()]
CELL_IDS = list(_cells.CELLS)

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def make(engine: Any, cls: str, kw: dict, **extra: Any) -> rnnfast.RecurrentBase:
    return getattr(engine, cls)(**kw, **extra)


def make_pair(cls: str, kw: dict, **extra: Any) -> tuple[Any, Any]:
    """The fast module and a float64 reference module with the same weights, seeded (0 unless
    given): unseeded, one run in ~2000 of test_proj's tiny float32 case drew weights whose
    projection gradient rounds to 1.16e-5 of its scale, over RTOL."""
    extra.setdefault("seed", 0)
    fast = make(rnnfast, cls, kw, **extra)
    extra64 = {**extra, "dtype": np.float64}
    ref = make(reference, cls, kw, **extra64)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """max |actual - expected| <= rtol * max |expected| (exact when expected is all zero)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    err = float(np.abs(actual.astype(np.float64) - expected).max()) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.0e} * scale {scale:.3e}"


def numeric_grad(f: Any, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of f() with respect to every element of arr (perturbed in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = f()
        arr[idx] = old - eps
        down = f()
        arr[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def check_gradients_by_finite_differences(m: Any, x: np.ndarray, state: Any, lengths: Any) -> None:
    """backward's dx, dstate0 and every parameter gradient of the float64 module m against
    central differences of the loss sum(y * wy) + sum over final states of sum(s * ws)."""
    rng = np.random.default_rng(2)
    y, s_n, tape = m.forward(x, state, lengths)
    wy = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(s.shape) for s in state_arrays(s_n)]
    m.zero_grad()
    dx, ds0 = m.backward(tape, wy, tuple(ws) if len(ws) == 2 else ws[0])

    def loss() -> float:
        y_, s_, _ = m.forward(x, state, lengths, training=False)
        return float(np.sum(y_ * wy) + sum(np.sum(s * w) for s, w in zip(state_arrays(s_), ws)))

    pairs = [("x", dx, x)] + [
        (f"state[{i}]", d, s)
        for i, (d, s) in enumerate(zip(state_arrays(ds0), state_arrays(state)))
    ]
    for what, analytic, arr in pairs:
        numeric = numeric_grad(loss, arr)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=what)
    with m.params.writable() as params:
        for name, p in params.items():
            numeric = numeric_grad(loss, p)
            np.testing.assert_allclose(m.grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def digests_under_isas(code: str, isas: list[str], *args: str) -> dict[str, str]:
    """What `python -c code *args` prints (a digest) in a process forced to each ISA."""
    digests = {}
    for isa in isas:
        out = subprocess.run(
            [sys.executable, "-c", code, *args],
            env={**os.environ, "RNNFAST_ISA": isa},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        digests[isa] = out.stdout.strip()
    return digests


def state_arrays(state: Any) -> list[np.ndarray]:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.fixture
def threads() -> Iterator[Any]:
    """Sets the thread count for one test and restores it afterwards."""
    before = rnnfast.get_num_threads()
    yield rnnfast.set_num_threads
    rnnfast.set_num_threads(before)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        help="run the fuzz tests (test_fuzz.py) for 100,000 calls instead of the quick budget",
    )


@pytest.fixture(scope="session")
def fuzz_long(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--fuzz-long"))
