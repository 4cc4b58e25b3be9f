"""The kernels' vectorised exp, tanh and sigmoid against libm, over a dense sweep.

Stated bounds (kernel_impl.h): for results in the normal range, exp within 2 ulp and tanh and
sigmoid within 4 ulp of the correctly rounded value (measured: 1, 3, 3 on avx2 and generic);
below it, within one subnormal step; overflow gives inf, NaN propagates.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import digests_under_isas

import rnnfast
from rnnfast import _core

BOUND_ULP = {"exp": 2.0, "tanh": 4.0, "sigmoid": 4.0}


def exact(name: str, x: np.ndarray) -> np.ndarray:
    """The float64 libm value (exact enough to judge float32, and float64 within 1 ulp)."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "tanh":
            return np.tanh(x)
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sweep(dtype: type) -> np.ndarray:
    parts = [
        np.linspace(-110, 100, 400_001),  # both saturating ranges
        np.linspace(-1, 1, 200_001),  # the small-argument branches
        np.geomspace(1e-30, 1, 20_001),
        -np.geomspace(1e-30, 1, 20_001),
        np.linspace(0.2, 0.3, 20_001),  # around tanh's switch at 1/4
    ]
    if dtype == np.float64:
        parts.append(np.linspace(-750, 715, 200_001))
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_error_bound_over_dense_sweep(name: str, dtype: type) -> None:
    x = sweep(dtype)
    got = _core.activation(name, x)
    assert got.dtype == dtype and got.shape == x.shape
    ref = exact(name, x)
    fi = np.finfo(dtype)
    overflow = ref > fi.max
    assert np.all(np.isposinf(got[overflow])), "results beyond the largest float must be inf"
    normal = ~overflow & (np.abs(ref) >= fi.tiny)
    ulp = np.spacing(np.abs(ref[normal]).astype(dtype)).astype(np.float64)
    err = np.abs(got[normal].astype(np.float64) - ref[normal]) / ulp
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND_ULP[name], f"{err[worst]:.2f} ulp at x = {x[normal][worst]!r}"
    sub = ~overflow & ~normal
    smallest_step = np.finfo(dtype).smallest_subnormal
    assert np.all(np.abs(got[sub].astype(np.float64) - ref[sub]) <= smallest_step)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values(dtype: type) -> None:
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30], dtype)
    e, t, s = (_core.activation(n, x) for n in ("exp", "tanh", "sigmoid"))
    np.testing.assert_array_equal(e, np.array([np.inf, 0, np.nan, 1, 1, np.inf, 0], dtype))
    np.testing.assert_array_equal(t, np.array([1, -1, np.nan, 0, -0.0, 1, -1], dtype))
    np.testing.assert_array_equal(s, np.array([1, 0, np.nan, 0.5, 0.5, 1, 0], dtype))
    assert np.signbit(t[4]) and not np.signbit(t[3])


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 33])
def test_every_length_and_tail(n: int) -> None:
    """Lengths around the vector width exercise the tail path; each value stands alone."""
    x = np.linspace(-3, 3, n).astype(np.float32)
    got = _core.activation("tanh", x)
    for i in range(n):
        np.testing.assert_array_equal(got[i], _core.activation("tanh", x[i : i + 1])[0])


def test_bad_activation_name() -> None:
    with pytest.raises(ValueError, match=r"name: expected 'exp', 'tanh' or 'sigmoid', got 'relu'"):
        _core.activation("relu", np.zeros(3, np.float32))


_DIGEST = """
import hashlib, os, sys
import numpy as np
sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]  # the test file, tests/conftest.py
from test_activations import sweep
from rnnfast import _core
h = hashlib.sha256()
for dtype in (np.float32, np.float64):
    x = sweep(dtype)
    for name in ("exp", "tanh", "sigmoid"):
        h.update(_core.activation(name, x).tobytes())
print(hashlib.sha256(h.digest()).hexdigest())
"""


@pytest.mark.skipif("RNNFAST_ISA" in os.environ, reason="already running under a forced ISA")
def test_same_bits_on_every_simd_isa() -> None:
    """exp scales by 2^n with AVX-512's vscalef and elsewhere in two exact halves: the same
    bits (activations_impl.h), which bf16's equal bits across ISAs rely on too."""
    supported = rnnfast.show_config()["supported_isas"]
    isas = [i for i in ("avx512", "avx2", "neon") if i in supported]
    if len(isas) < 2:
        pytest.skip(f"one SIMD ISA here ({isas})")
    digests = digests_under_isas(_DIGEST, isas, os.path.dirname(__file__))
    assert len(set(digests.values())) == 1, digests
