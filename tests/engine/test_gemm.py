"""The core's GEMM against NumPy, across tile edges, K blocks and both operand layouts."""

from __future__ import annotations

import numpy as np
import pytest

from rnnfast import _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("transpose_b", [False, True], ids=["nn", "nt"])
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "aT"])
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
def test_matmul_matches_numpy(m, n, k, transpose_a, transpose_b, dtype, threads):
    threads(2)
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    op_a = a.T if transpose_a else a
    want = op_a.astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    got = _core.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    assert got.shape == (m, n) and got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.sqrt(k)))


def test_matmul_refuses_mismatched_inner_size():
    with pytest.raises(ValueError, match=r"b: expected 3 rows \(a's columns\), got 4"):
        _core.matmul(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))


def test_matmul_adds_into_out():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 7))
    b = rng.standard_normal((50, 9))
    out = rng.standard_normal((7, 9))
    want = out + a.T @ b
    assert _core.matmul(a, b, transpose_a=True, out=out) is None
    np.testing.assert_allclose(out, want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"out: expected shape \(7, 9\), got \(9, 7\)"):
        _core.matmul(a, b, transpose_a=True, out=np.zeros((9, 7)))
    ro = np.zeros((7, 9))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writeable array"):
        _core.matmul(a, b, transpose_a=True, out=ro)


@pytest.mark.parametrize(("m", "n", "k"), [(96, 256, 2048), (5, 40, 300), (300, 8, 64)])
def test_matmul_bits_do_not_depend_on_threads(m, n, k, threads):
    # Few blocks are cut finer for more threads (a 96 x 256 product was one task): who computes
    # an element changes, never how.
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(_core.matmul(a, b, transpose_a=True))
    for got in results[1:]:
        assert got.tobytes() == results[0].tobytes()
