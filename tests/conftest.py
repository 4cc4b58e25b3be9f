"""Shared helpers: fast/reference module pairs with equal weights, a scale-aware comparison."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rnnfast
from rnnfast import reference

# (class name, constructor keywords): every cell and variant.
CELLS = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {}),
    ("GRU", {"linear_before_reset": True}),
    ("GRU", {"linear_before_reset": False}),
]
CELL_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def make(engine: Any, cls: str, kw: dict, **extra: Any) -> rnnfast.RecurrentBase:
    return getattr(engine, cls)(**kw, **extra)


def make_pair(cls: str, kw: dict, **extra: Any) -> tuple[Any, Any]:
    """The fast module and a float64 reference module with the same weights."""
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
