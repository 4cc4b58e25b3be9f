"""`rnnfast bench`: rnnfast against its NumPy reference and PyTorch, side by side in one process.

For every cell and size, inference and one training step (forward + backward): each engine's
median milliseconds with its spread (interquartile range / median, from interleaved rounds; see
rnnfast._timing), rnnfast's speedups, its GFLOP/s and their share of this machine's peaks,
measured at start: the GEMM peak (% peak) and the FMA peak (% FMA: independent FMA chains, what
the hardware does), and the largest difference between rnnfast's and the reference's outputs and
gradients (relative to each array's largest magnitude). Rows whose spread exceeds 10% are flagged
(`~`): the machine was too busy for their figures to be trusted. The header also gives what
bounds a batch of one from below: one thread's matrix-vector product from L2, and a round trip
between two threads.

Other reports: `--busy N` (N CPU-bound neighbour processes: the default team against one thread),
`--overhead` (the cost of a T = 1 call against PyTorch's, and of step()), `--compare OLD.json`
(ratios against an earlier run's JSON, for tracking regressions).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core, checkpoint, reference
from .._cells import GATES_OF_MODULE
from .._fast import GRU, LSTM, RNN
from .._runtime import get_num_threads, isa, set_num_threads
from .._timing import BUSY_FLAG, SPREAD_FLAG, OthersCpu, interleaved
from ._args import THREADS, bounded_int

# The default problem set (T, B, I = H): a latency row (B = 1) and three throughput rows.
DEFAULT_SIZES = [(100, 1, 128), (100, 32, 256), (50, 64, 512), (25, 16, 1024)]
QUICK_SIZES = [(100, 1, 128), (100, 32, 256)]
CELLS = {  # name: (rnnfast class, reference class, torch.nn class name, gates)
    "rnn": (RNN, reference.RNN, "RNN", GATES_OF_MODULE["RNN"]),
    "lstm": (LSTM, reference.LSTM, "LSTM", GATES_OF_MODULE["LSTM"]),
    "gru": (GRU, reference.GRU, "GRU", GATES_OF_MODULE["GRU"]),
}
BUSY_CASE = ("lstm", 200, 1, 256)  # a small step, a barrier every step


@dataclass
class Row:
    cell: str
    steps: int
    batch: int
    hidden: int
    mode: str
    rnnfast: dict[str, float]
    reference: dict[str, float]
    pytorch: dict[str, float] | None
    vs_reference: float
    vs_torch: float | None
    gflops: float
    pct_peak: float
    max_rel_diff: float
    noisy: bool
    others_cpu: float | None = None  # other processes' share of the CPUs while it was measured
    pct_fma: float | None = None  # share of the FMA-chain peak (_core.fma_peak)
    precision: str = "fp32"  # rnnfast's products (and torch under autocast for bf16)
    vs_fp32: float | None = None  # bf16 rows: rnnfast float32's median / this row's

    @property
    def busy(self) -> bool:
        return self.others_cpu is not None and self.others_cpu > BUSY_FLAG

    def key(self) -> tuple[str, int, int, int, str, str]:
        return (self.cell, self.steps, self.batch, self.hidden, self.mode, self.precision)


def batch_of_one_floors(seconds: float) -> dict[str, float | None]:
    """What bounds a batch of one's step from below on this machine: the rate at which one thread
    reads a recurrent layer's weights from L2 (a matrix-vector product over a float32 LSTM H=128's
    W_hh, 256 KiB), and a round trip between two threads (a step split between threads exchanges
    its state once at least). The round trip is None without a second thread, or when a busy
    machine kept the two threads from meeting in time."""
    trip = _core.round_trip_ns(seconds)
    return {
        "l2_matvec_gbps": _core.l2_matvec_gbps(256, seconds),
        "round_trip_ns": None if math.isnan(trip) else trip,
    }


def format_floors(floors: dict[str, float | None]) -> str:
    gbps, trip = floors["l2_matvec_gbps"], floors["round_trip_ns"]
    assert gbps is not None
    w_hh = 4 * 128 * 128 * 4  # bytes of a float32 LSTM H=128's W_hh
    text = (
        f"B = 1 floors: one thread reads a 256 KiB matrix from L2 at {gbps:.0f} GB/s in a "
        f"matrix-vector product (a float32 LSTM H=128's W_hh: {w_hh / gbps / 1e3:.2f} us a step "
        f"on one core, {w_hh / gbps / 2e3:.2f} on each of two)"
    )
    if trip is not None:
        text += f"; a round trip between two threads {trip:.0f} ns (once a step at least on two)"
    elif _core.usable_threads() >= 2:
        text += "; a round trip between two threads: not measured (a busy machine)"
    return text


def measure_peak(size: int = 1536) -> tuple[float, str]:
    """This machine's float32 GEMM peak: the best GFLOP/s of rnnfast's GEMM and NumPy's BLAS on
    a square product, best of 5, at the current thread count."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    flop = 2.0 * size**3
    best = {}
    for name, fn in (("rnnfast", lambda: _core.matmul(a, b)), ("numpy", lambda: a @ b)):
        time.sleep(0.2)
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


def _torch_fns(
    torch: Any, name: str, fast: Any, x: np.ndarray, dy: np.ndarray, precision: str = "fp32"
) -> dict:
    """torch.nn's module on the same weights; for bf16, under torch.autocast("cpu", bfloat16)
    (what a PyTorch user does for bf16 speed)."""
    import contextlib

    hidden = fast.hidden_size
    tm = getattr(torch.nn, name)(hidden, hidden)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in fast.state_dict().items()})
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    xg = xt.clone().requires_grad_(True)

    def cast() -> Any:
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def infer() -> None:
        with torch.no_grad(), cast():
            tm(xt)

    def train() -> None:
        tm.zero_grad()
        with cast():
            y, _ = tm(xg)
        y.backward(dyt.to(y.dtype))

    return {"inference": infer, "training": train}


def bench_one(
    cell: str,
    steps: int,
    batch: int,
    hidden: int,
    rounds: int,
    min_time: float,
    peak: float,
    torch: Any,
    fma_peak: float | None = None,
    precision: str = "fp32",
) -> list[Row]:
    fast_cls, ref_cls, torch_name, gates = CELLS[cell]
    fast = fast_cls(hidden, hidden, seed=0, precision=precision)
    fast32 = fast_cls(hidden, hidden, seed=0) if precision != "fp32" else None
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
    torch_fns = _torch_fns(torch, torch_name, fast, x, dy, precision) if torch is not None else {}
    work = flops(gates, steps, batch, hidden, hidden)
    rows = []
    for mode, fn_fast, fn_ref, mult in (
        ("inference", lambda: fast(x), lambda: ref(x), 1.0),
        ("training", lambda: train(fast), lambda: train(ref), 3.0),
    ):
        fns = {"rnnfast": fn_fast, "reference": fn_ref}
        if fast32 is not None:
            fns["rnnfast_fp32"] = (
                (lambda: fast32(x)) if mode == "inference" else (lambda: train(fast32))
            )
        if torch_fns:
            fns["pytorch"] = torch_fns[mode]
        with OthersCpu() as others:
            t = interleaved(fns, rounds=rounds, min_time=min_time)
        fast_ms, ref_ms = t["rnnfast"].median, t["reference"].median
        torch_ms = t["pytorch"].median if "pytorch" in t else None
        gflops = mult * work / (fast_ms * 1e6)
        noisy = any(t[n].spread > SPREAD_FLAG for n in ("rnnfast", "pytorch") if n in t)
        rows.append(
            Row(
                cell,
                steps,
                batch,
                hidden,
                mode,
                t["rnnfast"].summary(),
                t["reference"].summary(),
                t["pytorch"].summary() if "pytorch" in t else None,
                ref_ms / fast_ms,
                None if torch_ms is None else torch_ms / fast_ms,
                gflops,
                100.0 * gflops / peak,
                diff,
                noisy,
                others.share,
                None if fma_peak is None else 100.0 * gflops / fma_peak,
                precision,
                t["rnnfast_fp32"].median / fast_ms if "rnnfast_fp32" in t else None,
            )
        )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    with_fp32 = any(r.vs_fp32 is not None for r in rows)
    head = (
        f"{'cell':<5} {'T':>4} {'B':>3} {'H':>5} {'mode':<9} {'rnnfast':>9} {'+-':>4} "
        f"{'reference':>10} {'pytorch':>9} {'+-':>4} {'vs ref':>7} {'vs torch':>8} "
        + (f"{'vs fp32':>7} " if with_fp32 else "")
        + f"{'GFLOP/s':>8} {'% peak':>6} {'% FMA':>5} {'max diff':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r.pytorch
        torch_ms = f"{t['median_ms']:9.3f} {100 * t['spread']:3.0f}%" if t else f"{'-':>9} {'':>4}"
        vs_torch = f"{r.vs_torch:7.2f}x" if r.vs_torch is not None else f"{'-':>8}"
        fma = f"{r.pct_fma:4.0f}%" if r.pct_fma is not None else f"{'-':>5}"
        vs_fp32 = (f"{r.vs_fp32:6.2f}x " if r.vs_fp32 is not None else f"{'-':>7} ") * with_fp32
        lines.append(
            f"{r.cell:<5} {r.steps:>4} {r.batch:>3} {r.hidden:>5} {r.mode:<9} "
            f"{r.rnnfast['median_ms']:9.3f} {100 * r.rnnfast['spread']:3.0f}% "
            f"{r.reference['median_ms']:10.3f} {torch_ms} {r.vs_reference:6.1f}x {vs_torch} "
            f"{vs_fp32}{r.gflops:8.1f} {r.pct_peak:5.0f}% {fma} {r.max_rel_diff:8.1e}"
            + (" ~" if r.noisy else "")
            + (f" ! others {100 * (r.others_cpu or 0):.0f}%" if r.busy else "")
        )
    if any(r.noisy for r in rows):
        lines.append(
            f"~: a spread (interquartile range / median) above {100 * SPREAD_FLAG:.0f}%: "
            "the machine was busy; take that row's figures with care"
        )
    if any(r.busy for r in rows):
        lines.append(
            f"!: other processes used more than {100 * BUSY_FLAG:.0f}% of the CPUs while the row "
            "was measured: its times may all be slow alike (no spread shows it); measure again "
            "on a quiet machine"
        )
    return "\n".join(lines)


# ---- --compare -------------------------------------------------------------------------------


def load_compare(path: str) -> dict[tuple, dict]:
    """The rows of an earlier run's --json file, by (cell, T, B, H, mode, precision)."""
    try:
        data = json.loads(Path(path).read_text())
        rows = data["rows"]
        return {
            (
                r["cell"],
                r["steps"],
                r["batch"],
                r["hidden"],
                r["mode"],
                r.get("precision", "fp32"),
            ): r["rnnfast"]
            for r in rows
        }
    except OSError as exc:
        raise ValueError(f"--compare {path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"--compare {path}: not the JSON of `rnnfast bench --json` (rows with cell, steps, "
            "batch, hidden, mode and rnnfast timings)"
        ) from None


def format_compare(rows: Sequence[Row], old: dict[tuple, dict], path: str) -> str:
    """rnnfast's median now against the old file's: old / new (above 1: faster now), and whether
    the change is larger than both runs' spreads."""
    lines = [f"against {path} (old median / new median; above 1: faster now)"]
    matched = 0
    for r in rows:
        before = old.get(r.key())
        if before is None:
            continue
        matched += 1
        ratio = before["median_ms"] / r.rnnfast["median_ms"]
        noise = max(before.get("spread", 0.0), r.rnnfast["spread"])
        verdict = "~" if abs(ratio - 1) <= noise else ("faster" if ratio > 1 else "SLOWER")
        lines.append(
            f"{r.cell:<5} {r.steps:>4} {r.batch:>3} {r.hidden:>5} {r.mode:<9} "
            f"{before['median_ms']:9.3f} -> {r.rnnfast['median_ms']:9.3f} ms  {ratio:5.2f}x  "
            f"{verdict}"
        )
    if not matched:
        lines.append("(no row of this run is in that file)")
    return "\n".join(lines)


# ---- --busy and --overhead ---------------------------------------------------------------------


def neighbours(n: int) -> list[subprocess.Popen]:
    """n CPU-bound processes (an endless loop each); the caller kills them."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run_busy(n: int, rounds: int, min_time: float, threads: int) -> dict[str, Any]:
    """The default team against one thread, beside n CPU-bound processes, on BUSY_CASE."""
    cell, steps, batch, hidden = BUSY_CASE
    m = CELLS[cell][0](hidden, hidden, seed=0)
    x = np.random.default_rng(0).standard_normal((steps, batch, hidden)).astype(np.float32)

    def with_threads(k: int) -> Callable[[], Any]:
        def run() -> None:
            set_num_threads(k)
            m(x)

        return run

    procs = neighbours(n)
    try:
        time.sleep(0.5)  # let them take their cores
        t = interleaved(
            {f"{threads} threads": with_threads(threads), "1 thread": with_threads(1)},
            rounds=rounds,
            min_time=min_time,
            pause=0.05,
        )
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        set_num_threads(threads)
    team, one = t[f"{threads} threads"], t["1 thread"]
    return {
        "case": dict(zip(("cell", "steps", "batch", "hidden"), BUSY_CASE)),
        "neighbours": n,
        "threads": threads,
        "team": team.summary(),
        "one_thread": one.summary(),
        "ratio": team.median / one.median,
    }


def _per_step_us(m: Any, steps: int, size: int, rounds: int, min_time: float) -> dict:
    """step() a call, and a step of a forward over as many steps, in microseconds."""
    seq = np.random.default_rng(1).standard_normal((steps, 1, size)).astype(np.float32)
    xs = [np.ascontiguousarray(seq[i]) for i in range(steps)]
    st = m.step_state(1)

    def by_step() -> None:
        for x in xs:
            m.step(x, st)

    t = interleaved({"forward": lambda: m(seq), "step": by_step}, rounds=rounds, min_time=min_time)
    return {k: 1e3 * v.median / steps for k, v in t.items()}


def run_overhead(rounds: int, min_time: float, torch: Any) -> list[dict[str, Any]]:
    """The cost of tiny calls: a T = 1, B = 1, H = 32 inference call (rnnfast and PyTorch); step()
    at B = 1, H = 128 against a step of a 200-step forward; and step()'s fixed cost, on a model
    too small to compute anything (H = 8)."""
    out = []
    for cell, (cls, _, torch_name, _) in CELLS.items():
        m = cls(32, 32, seed=0)
        x1 = np.random.default_rng(0).standard_normal((1, 1, 32)).astype(np.float32)
        fns = {"rnnfast": lambda m=m, x1=x1: m(x1)}
        if torch is not None:
            tm = getattr(torch.nn, torch_name)(32, 32)
            xt = torch.from_numpy(x1)

            def torch_call(tm: Any = tm, xt: Any = xt) -> None:
                with torch.no_grad():
                    tm(xt)

            fns["pytorch"] = torch_call
        t = interleaved(fns, rounds=rounds, min_time=min_time, min_calls=100)
        at128 = _per_step_us(cls(128, 128, seed=0), 200, 128, rounds, min_time)
        tiny = _per_step_us(cls(8, 8, seed=0), 200, 8, rounds, min_time)
        row = {
            "cell": cell,
            "call_us": 1e3 * t["rnnfast"].median,
            "torch_call_us": 1e3 * t["pytorch"].median if "pytorch" in t else None,
            "step_us": at128["step"],
            "forward_step_us": at128["forward"],
            "step_fixed_us": tiny["step"],
        }
        row["vs_torch"] = row["torch_call_us"] / row["call_us"] if row["torch_call_us"] else None
        out.append(row)
    return out


def format_overhead(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "tiny calls: T=1 B=1 H=32 inference; step() at B=1 H=128 (and a step inside a 200-step "
        "forward); step()'s fixed cost (H=8) and its share of the H=128 step",
        f"{'cell':<5} {'call us':>8} {'pytorch us':>10} {'vs torch':>8} {'step() us':>9} "
        f"{'in forward':>10} {'fixed us':>8} {'share':>6}",
    ]
    for r in rows:
        vs = f"{r['vs_torch']:7.1f}x" if r["vs_torch"] else f"{'-':>8}"
        torch_us = f"{r['torch_call_us']:10.1f}" if r["torch_call_us"] else f"{'-':>10}"
        lines.append(
            f"{r['cell']:<5} {r['call_us']:8.2f} {torch_us} {vs} {r['step_us']:9.2f} "
            f"{r['forward_step_us']:10.2f} {r['step_fixed_us']:8.2f} "
            f"{100 * r['step_fixed_us'] / r['step_us']:5.0f}%"
        )
    return "\n".join(lines)


# ---- --torch-model: a whole PyTorch model, torch.nn's RNN against rnnfast.torch's ---------------

# (vocabulary, embedding, hidden, layers, steps, batch): a character-level language model's step.
TORCH_MODEL = (96, 64, 256, 2, 64, 32)
TORCH_MODEL_QUICK = (48, 32, 64, 2, 16, 8)


def torch_char_model(torch: Any, cell: str, size: Sequence[int]) -> Any:
    """embedding -> `layers` torch.nn.LSTM/GRU layers -> linear, as torch.nn modules."""
    vocab, embed, hidden, layers = size[:4]
    rnn_cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU

    class CharModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, embed)
            self.rnn = rnn_cls(embed, hidden, layers)
            self.head = torch.nn.Linear(hidden, vocab)

        def forward(self, ids: Any) -> Any:
            y, _ = self.rnn(self.embed(ids))
            return self.head(y)

    return CharModel()


def run_torch_model(rounds: int, min_time: float, torch: Any, quick: bool) -> dict[str, Any]:
    """A training step (forward, cross-entropy, backward, Adam) of the same model with torch.nn's
    RNN and patched with rnnfast.torch, in tokens per second; and the adapter's own cost per
    call, against the C++ stack it drives."""
    import copy

    import rnnfast.torch as rt

    size = TORCH_MODEL_QUICK if quick else TORCH_MODEL
    vocab, steps, batch = size[0], size[4], size[5]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (steps + 1, batch), generator=gen)
    rows = []
    for cell in ("lstm", "gru"):
        torch.manual_seed(0)
        native = torch_char_model(torch, cell, size)
        patched = rt.patch(copy.deepcopy(native))

        def step(model: Any, opt: Any) -> Callable[[], None]:
            def run() -> None:
                logits = model(ids[:-1])
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, vocab), ids[1:].reshape(-1)
                )
                opt.zero_grad()
                loss.backward()
                opt.step()

            return run

        fns = {
            "torch.nn": step(native, torch.optim.Adam(native.parameters(), lr=1e-3)),
            "rnnfast.torch": step(patched, torch.optim.Adam(patched.parameters(), lr=1e-3)),
        }
        t = interleaved(fns, rounds=rounds, min_time=min_time)
        tokens = steps * batch
        rows.append(
            {
                "cell": cell,
                "size": dict(zip(("vocab", "embed", "hidden", "layers", "steps", "batch"), size)),
                "torch_nn": t["torch.nn"].summary(),
                "rnnfast_torch": t["rnnfast.torch"].summary(),
                "torch_nn_tokens_s": tokens / (t["torch.nn"].median / 1e3),
                "rnnfast_torch_tokens_s": tokens / (t["rnnfast.torch"].median / 1e3),
                "speedup": t["torch.nn"].median / t["rnnfast.torch"].median,
            }
        )
    return {"models": rows, "overhead": adapter_overhead(torch, rt, rounds, min_time)}


def adapter_overhead(torch: Any, rt: Any, rounds: int, min_time: float) -> dict[str, float]:
    """Microseconds a call of rnnfast.torch.LSTM(32, 32) at T = B = 1 costs beyond the C++ stack
    call it makes: inference (grad mode off, as under no_grad) and a training forward + backward,
    with the part any autograd.Function pays (an empty one with the same inputs and outputs)."""
    torch.manual_seed(0)
    m = rt.LSTM(32, 32)
    x = torch.randn(1, 1, 32)
    xg = x.clone().requires_grad_()
    params = list(m._flat_weights)
    engine = m._rnnfast_engine()
    stack = engine.stack_for(m, params)
    xn, ones = x.numpy(), np.ones((1, 1, 32), np.float32)
    grads = engine.new_grads(np.dtype(np.float32))

    class Empty(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, *ps: Any) -> Any:
            ctx.save_for_backward(x, *ps)
            return x.clone(), x.clone(), x.clone()

        @staticmethod
        def backward(ctx: Any, dy: Any, dh: Any, dc: Any) -> Any:
            return (dy, *[torch.zeros_like(p) for p in ctx.saved_tensors[1:]])

    def raw_infer() -> None:
        stack.forward(xn, None, None, None, False, engine.version)

    def raw_train() -> None:
        _, _, _, tape = stack.forward(xn, None, None, None, True, engine.version)
        stack.set_grads(grads, assign=True)  # as the adapter does
        stack.backward(tape, ones, None, None, True)

    def adapter_train() -> None:
        y, _ = m(xg)
        y.backward(torch.ones_like(y))

    def empty_train() -> None:
        y, _, _ = Empty.apply(xg, *params)
        y.backward(torch.ones_like(y))

    with torch.no_grad():
        t = interleaved(
            {"ai": lambda: m(x), "ri": raw_infer}, rounds=rounds, min_time=min_time, min_calls=200
        )
    t.update(
        interleaved(
            {"at": adapter_train, "rt": raw_train, "et": empty_train},
            rounds=rounds,
            min_time=min_time,
            min_calls=200,
        )
    )
    return {
        "inference_us": 1e3 * (t["ai"].median - t["ri"].median),
        "training_us": 1e3 * (t["at"].median - t["rt"].median),
        "autograd_function_us": 1e3 * t["et"].median,
        "raw_inference_us": 1e3 * t["ri"].median,
        "raw_training_us": 1e3 * t["rt"].median,
    }


def format_torch_model(result: dict[str, Any]) -> str:
    lines = []
    for r in result["models"]:
        s = r["size"]
        lines.append(
            f"{r['cell']}: embedding({s['vocab']}, {s['embed']}) -> {s['layers']} x {r['cell']}"
            f"({s['hidden']}) -> linear, T={s['steps']} B={s['batch']}, Adam: torch.nn "
            f"{r['torch_nn_tokens_s']:,.0f} tokens/s (spread {100 * r['torch_nn']['spread']:.0f}%),"
            f" rnnfast.torch {r['rnnfast_torch_tokens_s']:,.0f} tokens/s "
            f"(spread {100 * r['rnnfast_torch']['spread']:.0f}%): {r['speedup']:.2f}x"
        )
    o = result["overhead"]
    lines.append(
        f"adapter overhead a call (LSTM(32, 32), T=B=1) beyond the C++ stack: inference "
        f"{o['inference_us']:.1f} us (stack {o['raw_inference_us']:.1f} us); training fwd+bwd "
        f"{o['training_us']:.1f} us (stack {o['raw_training_us']:.1f} us), of which "
        f"{o['autograd_function_us']:.1f} us any autograd.Function pays (an empty one)"
    )
    return "\n".join(lines)


# ---- the command ----------------------------------------------------------------------------


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for item in text.split(","):
        parts = item.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) <= 100_000 for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected TxBxH with integers in [1, 100000] (e.g. 100x32x256), got {item!r}"
            )
        sizes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return sizes


def parse_cells(text: str) -> list[str]:
    cells = [c.strip().lower() for c in text.split(",")]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown cells {bad}; choose from {sorted(CELLS)}")
    return cells


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 3600):
        raise argparse.ArgumentTypeError(f"expected seconds in [0, 3600], got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a subset that finishes in about a minute")
    p.add_argument("--cells", type=parse_cells, default=list(CELLS), help="e.g. lstm,gru")
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        help="TxBxH list, e.g. 100x1x128,50x64x512 (default: the built-in grid)",
    )
    p.add_argument(
        "--threads", type=THREADS, help="threads for rnnfast and PyTorch (default: all cores)"
    )
    p.add_argument(
        "--min-time",
        type=seconds,
        help="seconds of timing per engine and row (default 1, 0.3 with --quick)",
    )
    p.add_argument(
        "--rounds", type=bounded_int(1, 100), help="interleaved rounds (default 5, 3 with --quick)"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: rnnfast's products in bfloat16 (a `vs fp32` column: rnnfast float32 side by "
        "side) and PyTorch under torch.autocast('cpu', bfloat16)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the speedups (needs matplotlib)")
    p.add_argument("--compare", metavar="OLD.json", help="ratios against an earlier --json run")
    p.add_argument(
        "--busy",
        type=bounded_int(0, 64),
        metavar="N",
        help="instead of the grid: beside N CPU-bound processes, the default team vs one thread",
    )
    p.add_argument(
        "--overhead", action="store_true", help="instead of the grid: the cost of tiny calls"
    )
    p.add_argument(
        "--torch-model",
        action="store_true",
        help="instead of the grid: a PyTorch model's training step, torch.nn vs rnnfast.torch",
    )


def _check_output(path: str | None, flag: str) -> None:
    if path:
        try:
            checkpoint.check_writable(path, "an output file")
        except checkpoint.CheckpointError as exc:
            raise ValueError(f"{flag} {exc}") from None


def plot(rows: Sequence[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.cell} {r.steps}/{r.batch}/{r.hidden}\n{r.mode}" for r in rows]
    xs = np.arange(len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.6 * len(rows)), 8), sharex=True)
    axes[0].bar(xs, [r.vs_reference for r in rows], color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("speedup vs NumPy reference (log)")
    vs = [r.vs_torch or 0 for r in rows]
    err = [
        (r.vs_torch or 0) * (r.rnnfast["spread"] + (r.pytorch["spread"] if r.pytorch else 0))
        for r in rows
    ]
    axes[1].bar(xs, vs, yerr=err, color="tab:orange", capsize=2)
    axes[1].axhline(1.0, color="black", linewidth=0.8)
    axes[1].set_ylabel("speedup vs PyTorch (bars: spread)")
    axes[1].set_xticks(xs, labels, rotation=90, fontsize=7)
    fig.suptitle("rnnfast speedups (T/B/H; medians of interleaved rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(args: argparse.Namespace) -> int:
    # Everything the user gave is checked before minutes of measuring.
    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
    old = load_compare(args.compare) if args.compare else None
    if args.threads is not None:
        set_num_threads(args.threads)
    threads = get_num_threads()
    rounds = args.rounds or (3 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.3 if args.quick else 1.0)
    torch = None if args.no_torch else load_torch(threads)
    meta: dict[str, Any] = {
        "version": _core.__version__,
        "isa": isa(),
        "threads": threads,
        "rounds": rounds,
        "min_time": min_time,
        "torch": torch.__version__ if torch else None,
        "precision": args.precision,
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    what = "float32" if args.precision == "fp32" else "float32, products in bf16"
    print(
        f"rnnfast {_core.__version__} bench: {what}, ISA {isa()}, {threads} threads, "
        f"{platform.processor() or platform.machine()}; "
        f"pytorch {'torch ' + torch.__version__ if torch else 'not installed'}"
        + (" (under torch.autocast('cpu', bfloat16))" if torch and args.precision == "bf16" else "")
    )
    result: dict[str, Any] = {"meta": meta}
    if args.busy is not None:
        busy = run_busy(args.busy, rounds, min_time, threads)
        result["busy"] = busy
        cell, steps, batch, hidden = BUSY_CASE
        print(
            f"beside {args.busy} CPU-bound processes, {cell} T={steps} B={batch} H={hidden} "
            f"inference: {threads} threads {busy['team']['median_ms']:.2f} ms "
            f"(spread {100 * busy['team']['spread']:.0f}%), 1 thread "
            f"{busy['one_thread']['median_ms']:.2f} ms "
            f"(spread {100 * busy['one_thread']['spread']:.0f}%): {busy['ratio']:.2f}x"
        )
    elif args.torch_model:
        if torch is None:
            raise ValueError("--torch-model needs PyTorch (pip install rnnfast[torch])")
        result["torch_model"] = run_torch_model(rounds, min_time, torch, args.quick)
        print(format_torch_model(result["torch_model"]))
    elif args.overhead:
        result["overhead"] = run_overhead(rounds, min_time, torch)
        print(format_overhead(result["overhead"]))
    else:
        fma_peak = _core.fma_peak(0.1 if args.quick else 0.25)
        peak, method = measure_peak(768 if args.quick else 1536)
        meta.update(peak_gflops=peak, peak_method=method, fma_peak_gflops=fma_peak)
        print(
            f"FMA peak {fma_peak:.0f} GFLOP/s (independent {isa()} float32 FMA chains on "
            f"{_core.usable_threads()} threads: what the hardware does); GEMM peak {peak:.0f} "
            f"GFLOP/s, {100 * peak / fma_peak:.0f}% of it ({method})"
        )
        floors = batch_of_one_floors(0.05 if args.quick else 0.1)
        meta.update(floors)
        print(format_floors(floors))
        print(
            f"medians of {rounds} interleaved rounds (>= {min_time:g} s an engine and row); "
            "+-: spread; reference = rnnfast.reference (NumPy)"
        )
        sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
        rows: list[Row] = []
        todo = [(c, *s) for c in args.cells for s in sizes]
        for i, (cell, steps, batch, hidden) in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {cell} T={steps} B={batch} H={hidden}", file=sys.stderr)
            rows.extend(
                bench_one(
                    cell,
                    steps,
                    batch,
                    hidden,
                    rounds,
                    min_time,
                    peak,
                    torch,
                    fma_peak,
                    args.precision,
                )
            )
        print(format_table(rows))
        result["rows"] = [asdict(r) for r in rows]
        if old is not None:
            print(format_compare(rows, old, args.compare))
        if args.plot:
            plot(rows, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
