"""Argument types of the command line: each refuses a bad value with a message that says what
is expected (argparse prints it as one line)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if not stripped.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        value = int(stripped)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {text!r}")
        return value

    return parse


positive_int = bounded_int(1, 2**62)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def clip_norm(text: str) -> float:
    """--clip: the largest gradient norm, or 0 for no clipping."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"expected a finite number >= 0 (0 turns clipping off), got {text!r}"
        )
    return value


# Sizes a command accepts: far beyond what fits in memory, so a typo is refused at once.
THREADS = bounded_int(1, 1024)
HIDDEN = bounded_int(1, 16384)
LAYERS = bounded_int(1, 64)
BATCH = bounded_int(1, 65536)
SEQ_LEN = bounded_int(1, 10**7)


def seed(text: str) -> int:
    return bounded_int(0, 2**63 - 1)(text)
