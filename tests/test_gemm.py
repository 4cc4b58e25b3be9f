"""The core's GEMM against NumPy, across tile edges, K blocks and both operand layouts."""

from __future__ import annotations

import numpy as np
import pytest

from rnnfast import _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("transpose_b", [False, True], ids=["nn", "nt"])
@pytest.mark.parametrize(
    ("m", "n", "k"),
    [
        (1, 1, 1),
        (1, 513, 128),
        (5, 17, 3),
        (7, 33, 257),
        (73, 300, 600),
        (200, 64, 1),
        (0, 4, 4),
        (3, 0, 4),
        (3, 4, 0),
    ],
)
def test_matmul_matches_numpy(m, n, k, transpose_b, dtype, threads):
    threads(2)
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    want = a.astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    got = _core.matmul(a, b, transpose_b)
    assert got.shape == (m, n) and got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.sqrt(k)))


def test_matmul_refuses_mismatched_inner_size():
    with pytest.raises(ValueError, match=r"b: expected 3 rows \(a's columns\), got 4"):
        _core.matmul(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
