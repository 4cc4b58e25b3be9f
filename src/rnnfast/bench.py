"""`rnnfast bench`: rnnfast against its NumPy reference and PyTorch, side by side in one process.

For every cell and size, inference and one training step (forward + backward): the median
milliseconds of each engine, rnnfast's speedups, its GFLOP/s and their share of this machine's
GEMM peak (measured at start), and the largest difference between rnnfast's and the reference's
outputs and gradients (relative to each array's largest magnitude).

Thread pools of other libraries (NumPy's BLAS, PyTorch's OpenMP) keep spinning for a while
after they work and compete for the cores; a short pause before each engine's measurement lets
them fall asleep so that no engine is timed against another's idle spinning.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import _core, reference
from ._args import THREADS
from ._fast import GRU, LSTM, RNN
from ._runtime import get_num_threads, isa, set_num_threads

# DESIGN.md section 5: (T, B, I = H).
DEFAULT_SIZES = [(100, 1, 128), (100, 32, 256), (50, 64, 512), (25, 16, 1024)]
QUICK_SIZES = [(100, 1, 128), (100, 32, 256)]
CELLS = {  # name: (rnnfast class, reference class, torch.nn class name, gates)
    "rnn": (RNN, reference.RNN, "RNN", 1),
    "lstm": (LSTM, reference.LSTM, "LSTM", 4),
    "gru": (GRU, reference.GRU, "GRU", 3),
}
PAUSE_S = 0.2


@dataclass
class Row:
    cell: str
    steps: int
    batch: int
    hidden: int
    mode: str
    fast_ms: float
    ref_ms: float
    torch_ms: float | None
    vs_reference: float
    vs_torch: float | None
    gflops: float
    pct_peak: float
    max_rel_diff: float


def median_ms(fn: Callable[[], Any], min_time: float, max_repeat: int = 1000) -> float:
    """Median wall time of fn() in ms: a pause, one warm-up call, then at least 3 calls and
    until min_time seconds have passed (or max_repeat calls)."""
    time.sleep(PAUSE_S)
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure_peak(size: int = 1536) -> tuple[float, str]:
    """This machine's float32 GEMM peak: the best GFLOP/s of rnnfast's GEMM and NumPy's BLAS on
    a square product, best of 5, at the current thread count."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    flop = 2.0 * size**3
    best = {}
    for name, fn in (("rnnfast", lambda: _core.matmul(a, b)), ("numpy", lambda: a @ b)):
        time.sleep(PAUSE_S)
        fn()
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        best[name] = flop / min(runs) / 1e9
    peak = max(best.values())
    method = (
        f"best of 5 float32 {size}x{size}x{size} products: rnnfast GEMM "
        f"{best['rnnfast']:.0f} GFLOP/s, NumPy BLAS {best['numpy']:.0f} GFLOP/s"
    )
    return peak, method


def flops(gates: int, steps: int, batch: int, size: int, hidden: int) -> float:
    """FLOPs of a forward pass: 2*B*G*H*(I+H) a step (a training step counts 3x)."""
    return 2.0 * steps * batch * gates * hidden * (size + hidden)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a.astype(np.float64) - b).max()) / scale if scale else 0.0


def load_torch(threads: int) -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def bench_one(
    cell: str, steps: int, batch: int, hidden: int, min_time: float, peak: float, torch: Any
) -> list[Row]:
    fast_cls, ref_cls, torch_name, gates = CELLS[cell]
    fast = fast_cls(hidden, hidden, seed=0)
    ref = ref_cls(hidden, hidden)
    ref.load_state_dict(fast.state_dict())
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

    torch_fns: dict[str, Callable[[], Any]] = {}
    if torch is not None:
        tm = getattr(torch.nn, torch_name)(hidden, hidden)
        tm.load_state_dict({k: torch.from_numpy(v) for k, v in fast.state_dict().items()})
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        xg = xt.clone().requires_grad_(True)

        def torch_infer() -> None:
            with torch.no_grad():
                tm(xt)

        def torch_train() -> None:
            tm.zero_grad()
            y, _ = tm(xg)
            y.backward(dyt)

        torch_fns = {"inference": torch_infer, "training": torch_train}

    work = flops(gates, steps, batch, hidden, hidden)
    rows = []
    for mode, fn_fast, fn_ref, mult in (
        ("inference", lambda: fast(x), lambda: ref(x), 1.0),
        ("training", lambda: train(fast), lambda: train(ref), 3.0),
    ):
        t_fast = median_ms(fn_fast, min_time)
        t_ref = median_ms(fn_ref, min_time)
        t_torch = median_ms(torch_fns[mode], min_time) if torch_fns else None
        gflops = mult * work / (t_fast * 1e6)
        rows.append(
            Row(
                cell,
                steps,
                batch,
                hidden,
                mode,
                t_fast,
                t_ref,
                t_torch,
                t_ref / t_fast,
                None if t_torch is None else t_torch / t_fast,
                gflops,
                100.0 * gflops / peak,
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
                f"expected TxBxH with positive integers (e.g. 100x32x256), got {item!r}"
            )
        sizes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return sizes


def parse_cells(text: str) -> list[str]:
    cells = [c.strip().lower() for c in text.split(",")]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown cells {bad}; choose from {sorted(CELLS)}")
    return cells


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a subset that finishes in under a minute")
    p.add_argument("--cells", type=parse_cells, default=list(CELLS), help="e.g. lstm,gru")
    p.add_argument("--sizes", type=parse_sizes, help="TxBxH list, e.g. 100x1x128,50x64x512")
    p.add_argument("--threads", type=THREADS, help="threads for rnnfast and PyTorch")
    p.add_argument("--min-time", type=float, help="seconds to spend timing each measurement")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the speedups (needs matplotlib)")


def format_table(rows: Sequence[Row]) -> str:
    head = (
        f"{'cell':<5} {'T':>4} {'B':>3} {'H':>5} {'mode':<9} {'rnnfast':>9} {'reference':>10} "
        f"{'pytorch':>9} {'vs ref':>7} {'vs torch':>8} {'GFLOP/s':>8} {'% peak':>6} "
        f"{'max diff':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        torch_ms = f"{r.torch_ms:9.3f}" if r.torch_ms is not None else f"{'-':>9}"
        vs_torch = f"{r.vs_torch:7.2f}x" if r.vs_torch is not None else f"{'-':>8}"
        lines.append(
            f"{r.cell:<5} {r.steps:>4} {r.batch:>3} {r.hidden:>5} {r.mode:<9} {r.fast_ms:9.3f} "
            f"{r.ref_ms:10.3f} {torch_ms} {r.vs_reference:6.1f}x {vs_torch} {r.gflops:8.1f} "
            f"{r.pct_peak:5.0f}% {r.max_rel_diff:8.1e}"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.cell} {r.steps}/{r.batch}/{r.hidden}\n{r.mode}" for r in rows]
    xs = np.arange(len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.6 * len(rows)), 8), sharex=True)
    axes[0].bar(xs, [r.vs_reference for r in rows], color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("speedup vs NumPy reference")
    axes[1].bar(xs, [r.vs_torch or 0 for r in rows], color="tab:orange")
    axes[1].axhline(1.0, color="black", linewidth=0.8)
    axes[1].set_ylabel("speedup vs PyTorch")
    axes[1].set_xticks(xs, labels, rotation=90, fontsize=7)
    fig.suptitle("rnnfast speedups (T/B/H, medians side by side)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "rnnfast bench: error: --plot needs matplotlib (pip install matplotlib)",
                file=sys.stderr,
            )
            return 2
    if args.threads is not None:
        set_num_threads(args.threads)
    threads = get_num_threads()
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 1.0)
    torch = None if args.no_torch else load_torch(threads)
    peak, method = measure_peak(768 if args.quick else 1536)
    print(
        f"rnnfast {_core.__version__} bench: float32, I = H, ISA {isa()}, {threads} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"GEMM peak {peak:.0f} GFLOP/s ({method})")
    print(
        f"medians of >= 3 runs (>= {min_time:g} s a measurement); reference = rnnfast.reference "
        f"(NumPy); pytorch = {'torch ' + torch.__version__ if torch else 'not installed'}"
    )
    rows: list[Row] = []
    todo = [(c, *s) for c in args.cells for s in sizes]
    tty = sys.stderr.isatty()
    for i, (cell, steps, batch, hidden) in enumerate(todo, 1):
        msg = f"[{i}/{len(todo)}] {cell} T={steps} B={batch} H={hidden}"
        print(f"\r{msg:<60}" if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)
        rows.extend(bench_one(cell, steps, batch, hidden, min_time, peak, torch))
    if tty:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    print(format_table(rows))
    if args.json:
        meta = {
            "version": _core.__version__,
            "isa": isa(),
            "threads": threads,
            "peak_gflops": peak,
            "peak_method": method,
            "min_time": min_time,
            "torch": torch.__version__ if torch else None,
            "machine": platform.machine(),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": [asdict(r) for r in rows]}, f, indent=1)
    if args.plot:
        plot(rows, args.plot)
    return 0
