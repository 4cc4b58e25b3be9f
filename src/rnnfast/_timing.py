"""Timing on a shared, noisy machine.

Engines are measured side by side in interleaved rounds: each round times every engine once, in
an order that rotates from round to round, so that a slow phase of the machine (other processes,
a host pausing the VM) falls on every engine alike rather than on whichever ran then. Before each
engine's block a short pause lets other libraries' idle thread pools (NumPy's OpenBLAS, PyTorch's
OpenMP) stop spinning, and one untimed call warms the engine up. The spread reported with a median
is the interquartile range relative to the median: a row whose spread exceeds 10% is flagged.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SPREAD_FLAG = 0.10
# A row measured while other processes used more than this share of the machine's CPU time is
# flagged however steady its times were: a neighbour that slows every round alike (a test suite
# beside the bench made a 0.5 ms call take 48 ms with a 2% spread) leaves no spread to see.
BUSY_FLAG = 0.25


def _machine_busy_ticks() -> int | None:
    """CPU time every process of the machine used so far, in clock ticks (Linux /proc/stat:
    user, nice, system, irq, softirq, and steal: time the host gave to others)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return user + nice + system + irq + softirq + steal


class OthersCpu:
    """While the block runs: the share of the machine's CPU time (0 to 1) used by processes
    other than this one; `share` is None where the system does not say (not Linux)."""

    share: float | None = None

    def __enter__(self) -> OthersCpu:
        self._busy = _machine_busy_ticks()
        self._own = sum(os.times()[:2])
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _machine_busy_ticks()
        wall = time.monotonic() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        others = (busy - self._busy) / ticks - (sum(os.times()[:2]) - self._own)
        self.share = min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)


@dataclass
class Timing:
    """Per-call wall times of one engine, in milliseconds."""

    times_ms: list[float]

    def _quantile(self, q: float) -> float:
        xs = sorted(self.times_ms)
        if len(xs) == 1:
            return xs[0]
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def spread(self) -> float:
        """(q3 - q1) / median."""
        m = self.median
        return (self._quantile(0.75) - self._quantile(0.25)) / m if m > 0 else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "median_ms": self.median,
            "q1_ms": self._quantile(0.25),
            "q3_ms": self._quantile(0.75),
            "min_ms": min(self.times_ms),
            "max_ms": max(self.times_ms),
            "spread": self.spread,
            "calls": len(self.times_ms),
        }


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    rounds: int,
    min_time: float,
    pause: float = 0.1,
    min_calls: int = 1,
) -> dict[str, Timing]:
    """Times every fn in `rounds` interleaved rounds; each gets about min_time / rounds seconds
    a round (and at least `min_calls` calls)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    budget = min_time / max(rounds, 1)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            time.sleep(pause)
            fn()  # warm-up, untimed
            start = time.perf_counter()
            calls = 0
            while calls < min_calls or time.perf_counter() - start < budget:
                t0 = time.perf_counter()
                fn()
                times[name].append(1e3 * (time.perf_counter() - t0))
                calls += 1
    return {n: Timing(t) for n, t in times.items()}
