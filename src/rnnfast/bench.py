"""`rnnfast bench`: the fast engine against the NumPy reference, side by side in one process.

For every cell and size: median milliseconds of inference and of one training step (forward +
backward), the speedup, the fast engine's GFLOP/s, and the largest difference between the two
engines' outputs and gradients (relative to each array's largest magnitude).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import GRU, LSTM, RNN, get_num_threads, reference, set_num_threads

# DESIGN.md section 5: (T, B, I = H).
DEFAULT_SIZES = [(100, 1, 128), (100, 32, 256), (50, 64, 512), (25, 16, 1024)]
QUICK_SIZES = [(100, 1, 128), (100, 32, 256)]
CELLS = {
    "rnn": (RNN, reference.RNN, 1),
    "lstm": (LSTM, reference.LSTM, 4),
    "gru": (GRU, reference.GRU, 3),
}


@dataclass
class Row:
    cell: str
    steps: int
    batch: int
    hidden: int
    mode: str
    fast_ms: float
    ref_ms: float
    speedup: float
    gflops: float
    max_rel_diff: float


def median_ms(fn: Callable[[], Any], min_time: float, max_repeat: int) -> float:
    """Median wall time of fn() in ms after one warm-up call, over at least 3 calls and until
    min_time seconds have passed (or max_repeat calls)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def flops(gates: int, steps: int, batch: int, size: int, hidden: int) -> float:
    """Multiply-add FLOPs of a forward pass: 2*B*G*H*(I+H) per step."""
    return 2.0 * steps * batch * gates * hidden * (size + hidden)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a.astype(np.float64) - b).max()) / scale if scale else 0.0


def bench_one(
    cell: str, steps: int, batch: int, hidden: int, min_time: float, max_repeat: int
) -> list[Row]:
    fast_cls, ref_cls, gates = CELLS[cell]
    fast = fast_cls(hidden, hidden, seed=0)
    ref = ref_cls(hidden, hidden, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    dy = rng.standard_normal((steps, batch, hidden)).astype(np.float32)

    def train(m: Any) -> tuple[np.ndarray, np.ndarray]:
        m.zero_grad()
        y, _, tape = m.forward(x)
        dx, _ = m.backward(tape, dy)
        return y, dx

    y_f, dx_f = train(fast)
    y_r, dx_r = train(ref)
    diff = max(
        [rel_diff(y_f, y_r), rel_diff(dx_f, dx_r)]
        + [rel_diff(fast.grads[k], ref.grads[k]) for k in ref.grads]
    )
    work = flops(gates, steps, batch, hidden, hidden)
    rows = []
    for mode, fn_fast, fn_ref, mult in (
        ("inference", lambda: fast(x), lambda: ref(x), 1.0),
        ("training", lambda: train(fast), lambda: train(ref), 3.0),
    ):
        t_fast = median_ms(fn_fast, min_time, max_repeat)
        t_ref = median_ms(fn_ref, min_time, max_repeat)
        rows.append(
            Row(
                cell,
                steps,
                batch,
                hidden,
                mode,
                t_fast,
                t_ref,
                t_ref / t_fast,
                mult * work / (t_fast * 1e6),
                diff,
            )
        )
    return rows


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for item in text.split(","):
        parts = item.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(
                f"--sizes: expected TxBxH with positive integers (e.g. 100x32x256), got {item!r}"
            )
        sizes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return sizes


def parse_cells(text: str) -> list[str]:
    cells = [c.strip().lower() for c in text.split(",")]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        raise argparse.ArgumentTypeError(f"--cells: unknown {bad}; choose from {sorted(CELLS)}")
    return cells


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a subset that finishes in under a minute")
    p.add_argument("--cells", type=parse_cells, default=list(CELLS), help="e.g. lstm,gru")
    p.add_argument("--sizes", type=parse_sizes, help="TxBxH list, e.g. 100x1x128,50x64x512")
    p.add_argument("--threads", type=int, help="threads for the fast engine (default: all)")
    p.add_argument("--min-time", type=float, help="seconds to spend timing each measurement")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")


def format_table(rows: Sequence[Row]) -> str:
    head = (
        f"{'cell':<5} {'T':>4} {'B':>4} {'H':>5} {'mode':<9} {'fast ms':>9} {'ref ms':>9} "
        f"{'speedup':>8} {'GFLOP/s':>8} {'max rel diff':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.cell:<5} {r.steps:>4} {r.batch:>4} {r.hidden:>5} {r.mode:<9} {r.fast_ms:>9.3f} "
            f"{r.ref_ms:>9.3f} {r.speedup:>7.1f}x {r.gflops:>8.1f} {r.max_rel_diff:>12.1e}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            print("rnnfast bench: error: --threads must be >= 1", file=sys.stderr)
            return 2
        set_num_threads(args.threads)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 1.0)
    print(
        f"rnnfast bench: float32, I = H, {get_num_threads()} threads, "
        f"medians of >= 3 runs (>= {min_time:g} s each measurement), reference = rnnfast.reference"
    )
    rows: list[Row] = []
    for cell in args.cells:
        for steps, batch, hidden in sizes:
            new = bench_one(cell, steps, batch, hidden, min_time, max_repeat=1000)
            rows.extend(new)
            for r in new:
                print(
                    f"  {r.cell} T={r.steps} B={r.batch} H={r.hidden} {r.mode}: "
                    f"{r.fast_ms:.3f} ms vs {r.ref_ms:.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0
