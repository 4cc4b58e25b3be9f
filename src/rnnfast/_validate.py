"""Argument checks shared by both engines: every refusal names the argument, expected and actual."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any) -> np.dtype:
    """The module dtype: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def check_int(value: Any, name: str) -> int:
    """A whole number (bools are refused: True is not a count)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        return operator.index(value)
    except TypeError as exc:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from exc


def check_size(value: Any, name: str, minimum: int = 1) -> int:
    """A whole number >= minimum."""
    n = check_int(value, name)
    if n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n}")
    return n


def check_bool(value: Any, name: str) -> bool:
    """A real boolean: 'False' or 0 would be a typo passing for an answer."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {value!r}")


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """None (fresh entropy) or a non-negative integer."""
    if seed is None:
        return None
    if isinstance(seed, bool):
        raise TypeError(f"{name}: expected None or an integer >= 0, got bool")
    try:
        n = operator.index(seed)
    except TypeError:
        raise TypeError(f"{name}: expected None or an integer >= 0, got {seed!r}") from None
    if n < 0:
        raise ValueError(f"{name}: expected None or an integer >= 0, got {n}")
    return n


def check_probability(value: Any, name: str) -> float:
    """A real number in [0, 1] (bool refused, as torch.nn.RNN refuses it for dropout)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number in [0, 1], got {value!r}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # NaN included
        raise ValueError(f"{name}: expected a number in [0, 1], got {p}")
    return p


def check_key(value: Any, name: str) -> int:
    """An integer in [0, 2**64): the name of a set of random masks."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer in [0, 2**64), got bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer in [0, 2**64), got {value!r}") from None
    if not 0 <= n < 2**64:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {n}")
    return n


def _integers_exact(arr: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every integer of arr is exactly a value of the floating dtype."""
    if arr.dtype.kind == "b" or arr.size == 0:
        return True
    limit = 2 ** (np.finfo(dtype).nmant + 1)  # every integer up to 2^24 (2^53) is a float32 (64)
    info = np.iinfo(arr.dtype)
    if -limit <= info.min and info.max <= limit:
        return True
    big = arr[(arr > limit) | (arr < -limit)] if info.min < 0 else arr[arr > limit]
    if big.size == 0:
        return True
    as_float = big.astype(dtype)
    # A value that rounds to 2^63 (2^64 unsigned) has no integer of arr's type to compare with.
    fits = (as_float >= float(info.min)) & (as_float < 2.0 ** (info.bits - (info.min < 0)))
    return bool(fits.all() and np.array_equal(as_float.astype(arr.dtype), big))


def as_float_array(
    value: Any,
    name: str,
    dtype: np.dtype,
    *,
    convert_floats: bool = False,
    python_numbers: bool | None = None,
) -> np.ndarray:
    """`value` as an array of `dtype`, never the caller's array modified.

    Integer and boolean arrays are converted when every value is exactly representable. A floating
    array of another precision is refused (as PyTorch does), unless `convert_floats` (loading a
    state dict, where PyTorch converts too). Python numbers and (nested) lists or tuples of them
    carry no precision of their own: they are rounded to `dtype`, as torch.tensor rounds them,
    and refused only when a value overflows it (`python_numbers` says whether `value` came from
    such, when the caller has already made it an array).
    """
    if python_numbers is None:
        python_numbers = isinstance(value, (list, tuple, float))
    arr = np.asarray(value)
    if arr.dtype == dtype:
        return arr
    kind = arr.dtype.kind
    if kind in "iub":
        if not _integers_exact(arr, dtype):
            raise TypeError(
                f"{name}: integer values cannot be represented exactly in {dtype}; "
                f"convert it yourself with .astype({dtype.name})"
            )
        return arr.astype(dtype)
    if kind == "f" and python_numbers:
        with np.errstate(over="ignore"):
            converted = arr.astype(dtype)
        if np.isinf(converted).sum() != np.isinf(arr).sum():
            raise ValueError(f"{name}: values beyond the range of {dtype}")
        return converted
    if kind == "f" and convert_floats:
        return arr.astype(dtype)
    if kind == "f":
        raise TypeError(
            f"{name}: expected dtype {dtype} (the module's dtype), got {arr.dtype}; "
            f"convert with .astype(np.{dtype.name}) or build the module with "
            f"dtype=np.{arr.dtype.name}"
        )
    raise TypeError(
        f"{name}: expected a real floating array of dtype {dtype}, got dtype {arr.dtype}"
    )


def check_shape(arr: np.ndarray, name: str, expected: tuple[int, ...], meaning: str = "") -> None:
    if arr.ndim != len(expected):
        raise ValueError(
            f"{name}: expected {len(expected)} dimensions{' ' + meaning if meaning else ''}, "
            f"got {arr.ndim} (shape {arr.shape})"
        )
    if arr.shape != tuple(expected):
        raise ValueError(
            f"{name}: expected shape {tuple(expected)}{' ' + meaning if meaning else ''}, "
            f"got {arr.shape}"
        )


def as_lengths(
    lengths: Sequence[int] | np.ndarray | None, batch: int, steps: int
) -> np.ndarray | None:
    """Per-sequence lengths as int64, each in [1, steps], one per batch element."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.size == 0 and arr.ndim == 1:  # [] for an empty batch: NumPy makes it float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D sequence, got shape {arr.shape}")
    if arr.shape[0] != batch:
        raise ValueError(
            f"lengths: expected {batch} values (one per batch element), got {arr.shape[0]}"
        )
    if batch and (arr.min() < 1 or arr.max() > steps):
        bad = int(np.flatnonzero((arr < 1) | (arr > steps))[0])
        raise ValueError(
            f"lengths: expected every value in [1, {steps}] (T = {steps}), "
            f"got {int(arr[bad])} at index {bad}"
        )
    return arr.astype(np.int64)
