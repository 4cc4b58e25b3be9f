"""Long-range-dependency tasks from the RNN literature, generated in code and seeded.

Every generator takes a NumPy Generator (or seed) and returns float32 inputs shaped (T, B, I).

- `adding_problem`: two channels, values in U(0, 1) and markers; exactly two steps are marked,
  one in each half; the target is the sum of the two marked values (Hochreiter & Schmidhuber
  1997). Always answering 1 gives MSE 1/6 ~ 0.167, the baseline to beat.
- `copy_task`: `length` random symbols, a blank delay, a delimiter, then the network must emit
  the symbols in order (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016). Targets are class
  indices, `blank` where nothing is to be emitted.
- `embedded_reber`: strings of the embedded Reber grammar; targets mark every symbol that may
  come next (Hochreiter & Schmidhuber 1997). The symbol before the last repeats the second one,
  across the whole inner string.
- `mass_spring`: m x'' + x = F(t) integrated with Euler's method; the input is the force, the
  target the position at every step (a time-series regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validate as v

REBER_SYMBOLS = "BTSXPVE"
# The Reber grammar: state -> [(symbol, next state)]; state 6 emits E and stops.
_REBER = {
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)],
    5: [("P", 4), ("V", 6)],
}


def _rng(seed: Any) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def adding_problem(batch: int, steps: int, seed: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """x (T, B, 2): values and markers; y (B, 1): the sum of the two marked values."""
    batch, steps = v.check_size(batch, "batch"), v.check_size(steps, "steps", minimum=2)
    rng = _rng(seed)
    values = rng.uniform(0, 1, size=(steps, batch))
    half = steps // 2
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, steps, size=batch)
    markers = np.zeros((steps, batch))
    cols = np.arange(batch)
    markers[first, cols] = 1
    markers[second, cols] = 1
    x = np.stack([values, markers], axis=2).astype(np.float32)
    y = (values[first, cols] + values[second, cols])[:, None].astype(np.float32)
    return x, y


def copy_task(
    batch: int, length: int = 10, delay: int = 50, symbols: int = 8, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """x (length + delay + length, B, symbols + 2) one-hot; targets (T, B) class indices.

    Classes 0..symbols-1 are the symbols, `symbols` is blank, `symbols + 1` the delimiter that
    tells the network to start copying (it is given at the last step of the delay).
    """
    batch, length = v.check_size(batch, "batch"), v.check_size(length, "length")
    delay, symbols = v.check_size(delay, "delay"), v.check_size(symbols, "symbols")
    rng = _rng(seed)
    blank, delimiter = symbols, symbols + 1
    steps = 2 * length + delay
    seq = rng.integers(0, symbols, size=(length, batch))
    inputs = np.full((steps, batch), blank)
    inputs[:length] = seq
    inputs[length + delay - 1] = delimiter
    targets = np.full((steps, batch), blank)
    targets[length + delay :] = seq
    x = np.eye(symbols + 2, dtype=np.float32)[inputs]
    return x, targets.astype(np.int64)


def _reber_string(rng: np.random.Generator) -> tuple[str, list[set[str]]]:
    """One Reber string and, for each of its symbols but the final E, the set of symbols that
    may follow it."""
    out, nexts, state = ["B"], [{"T", "P"}], 1
    while state != 6:
        symbol, state = _REBER[state][rng.integers(0, 2)]
        out.append(symbol)
        nexts.append({"E"} if state == 6 else {s for s, _ in _REBER[state]})
    out.append("E")
    return "".join(out), nexts


@dataclass
class ReberBatch:
    strings: list[str]
    x: np.ndarray  # (T, B, 7) one-hot of each symbol, zero past a string's end
    targets: np.ndarray  # (T, B, 7) 1 for every symbol that may come next
    lengths: np.ndarray  # (B,) number of symbols whose successor is predicted (len(string) - 1)


def embedded_reber(batch: int, seed: Any = None) -> ReberBatch:
    """Embedded Reber strings: B, T or P, a Reber string, the same T or P, E."""
    batch = v.check_size(batch, "batch")
    rng = _rng(seed)
    strings, next_sets = [], []
    for _ in range(batch):
        inner, inner_next = _reber_string(rng)
        branch = "TP"[rng.integers(0, 2)]
        strings.append("B" + branch + inner + branch + "E")
        # After B: T or P; after the branch: B; then the inner string's sets (one for each of its
        # symbols but its E); after the inner E only the remembered branch; after that, E.
        next_sets.append([{"T", "P"}, {"B"}, *inner_next, {branch}, {"E"}])
    lengths = np.array([len(s) - 1 for s in strings])
    steps = int(lengths.max())
    x = np.zeros((steps, batch, len(REBER_SYMBOLS)), np.float32)
    targets = np.zeros_like(x)
    index = {c: i for i, c in enumerate(REBER_SYMBOLS)}
    for b, (s, sets) in enumerate(zip(strings, next_sets)):
        for t in range(len(s) - 1):
            x[t, b, index[s[t]]] = 1
            for c in sets[t]:
                targets[t, b, index[c]] = 1
    return ReberBatch(strings, x, targets, lengths)


def mass_spring(
    batch: int, steps: int, dt: float = 0.1, mass: float = 1.0, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """x (T, B, 1): a smooth random force F; y (T, B, 1): the position after each Euler step of
    v' = (F - x)/m, x' = v from rest."""
    batch, steps = v.check_size(batch, "batch"), v.check_size(steps, "steps")
    if not (dt > 0 and mass > 0):
        raise ValueError(f"dt, mass: expected positive numbers, got {dt!r}, {mass!r}")
    rng = _rng(seed)
    t = np.arange(steps)[:, None] * dt
    freq = rng.uniform(0.05, 0.5, size=(3, batch))
    phase = rng.uniform(0, 2 * np.pi, size=(3, batch))
    amp = rng.uniform(0.2, 1.0, size=(3, batch))
    force = sum(amp[k] * np.sin(2 * np.pi * freq[k] * t + phase[k]) for k in range(3))
    pos = np.zeros((steps, batch))
    x, vel = np.zeros(batch), np.zeros(batch)
    for i in range(steps):
        x, vel = x + dt * vel, vel + dt * (force[i] - x) / mass
        pos[i] = x
    return force[..., None].astype(np.float32), pos[..., None].astype(np.float32)


__all__ = [
    "REBER_SYMBOLS",
    "ReberBatch",
    "adding_problem",
    "copy_task",
    "embedded_reber",
    "mass_spring",
]
