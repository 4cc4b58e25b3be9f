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


def check_size(value: Any, name: str, minimum: int = 1) -> int:
    """A whole number >= minimum (bools are refused: True is not a size)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        n = operator.index(value)
    except TypeError as exc:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from exc
    if n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n}")
    return n


def as_float_array(
    value: Any, name: str, dtype: np.dtype, *, convert_floats: bool = False
) -> np.ndarray:
    """`value` as an array of `dtype`, never the caller's array modified.

    Integer and boolean arrays are converted when every value is exactly representable. A floating
    array of another precision is refused (as PyTorch does), unless `convert_floats` (loading a
    state dict, where PyTorch converts too).
    """
    arr = np.asarray(value)
    if arr.dtype == dtype:
        return arr
    kind = arr.dtype.kind
    if kind in "iub":
        converted = arr.astype(dtype)
        if kind != "b" and not np.array_equal(converted, arr):
            raise TypeError(
                f"{name}: integer values cannot be represented exactly in {dtype}; "
                f"convert it yourself with .astype({dtype.name})"
            )
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
