"""What a call costs when it comes after a pause, as calls to a served model do: the median time
of a B = 1 LSTM call after sleeping 0, 1, 5 and 20 ms, for a few sequence lengths, with rnnfast's
team (the default), rnnfast on one thread, and torch.nn.LSTM (when installed).

Idle OpenMP threads sleep after spinning a while, and waking a sleeping thread costs 50-400 us on
a small VM; rnnfast keeps a small call after a pause on its calling thread (runtime/threads.h
CallTeam). Each configuration is timed in its own loop of `--calls` calls (a pause before each);
the sleep is not counted.

    python benchmarks/calls_after_a_pause.py [--hidden 128] [--steps 5 20 100] [--calls 60]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import rnnfast


def median_after(call: Callable[[], object], pause: float, calls: int) -> float:
    """Median microseconds of `call`, each after sleeping `pause` seconds."""
    call()
    times = []
    for _ in range(calls):
        if pause:
            time.sleep(pause)
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, nargs="+", default=[5, 20, 100])
    p.add_argument("--pauses-ms", type=float, nargs="+", default=[0, 1, 5, 20])
    p.add_argument("--calls", type=int, default=60)
    a = p.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    team = rnnfast.get_num_threads()
    m = rnnfast.LSTM(a.hidden, a.hidden)
    ref = torch.nn.LSTM(a.hidden, a.hidden).eval() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(team)
    print(
        f"LSTM H={a.hidden} B=1 inference, us a call (median of {a.calls}); "
        f"{team} threads, isa {rnnfast.isa()}"
    )
    header = f"{'T':>4} {'pause ms':>8} {'rnnfast':>9} {'1 thread':>9}"
    print(header + (f" {'torch':>9}" if ref is not None else ""))
    for steps in a.steps:
        x = np.random.default_rng(0).standard_normal((steps, 1, a.hidden)).astype(np.float32)
        xt = torch.from_numpy(x) if torch is not None else None
        for pause_ms in a.pauses_ms:
            pause = pause_ms / 1e3
            rnnfast.set_num_threads(team)
            ours = median_after(lambda x=x: m(x), pause, a.calls)
            rnnfast.set_num_threads(1)
            alone = median_after(lambda x=x: m(x), pause, a.calls)
            rnnfast.set_num_threads(team)
            row = f"{steps:4d} {pause_ms:8g} {ours:9.1f} {alone:9.1f}"
            if ref is not None:
                with torch.no_grad():
                    row += f" {median_after(lambda xt=xt: ref(xt), pause, a.calls):9.1f}"
            print(row)


if __name__ == "__main__":
    main()
