"""A 100-step Python loop of torch.nn's RNNCell/LSTMCell/GRUCell against the same loop of
rnnfast.torch's cells, under torch.no_grad() and training (backward through the loop), and the
same computation as one sequence call (torch.nn.LSTM vs rnnfast.torch.LSTM), which is what a
teacher-forced loop can be rewritten into. With --modules, a second table: the same loop
stepping torch.nn.RNN/LSTM/GRU (1 and 2 layers) one input at a time, as decoders built on the
modules do: y, hx = module(x[t:t+1], hx).

Each loop is what a decoder written with cells runs: hx = cell(x[t], hx) for t in range(T). The
engines are timed in interleaved rounds (rnnfast._timing); "vs torch" is torch's median over
rnnfast's.

    python benchmarks/cells_vs_torch.py [--hidden 128] [--batch 1 32] [--steps 100]
                                        [--rounds 5] [--seconds 6] [--modules]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

import rnnfast
import rnnfast.torch as rt
from rnnfast._timing import SPREAD_FLAG, interleaved

PAIRS = {
    "LSTMCell": (torch.nn.LSTMCell, rt.LSTMCell, torch.nn.LSTM, rt.LSTM),
    "GRUCell": (torch.nn.GRUCell, rt.GRUCell, torch.nn.GRU, rt.GRU),
    "RNNCell": (torch.nn.RNNCell, rt.RNNCell, torch.nn.RNN, rt.RNN),
}


def cell_loop(cell: torch.nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.set_grad_enabled(train):
            hx = None
            for t in range(x.shape[0]):
                hx = cell(x[t], hx)
            if train:
                (hx[0] if isinstance(hx, tuple) else hx).sum().backward()

    return run


def module_loop(module: torch.nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.set_grad_enabled(train):
            hx, ys = None, []
            for t in range(x.shape[0]):
                y, hx = module(x[t : t + 1], hx)
                ys.append(y)
            if train:
                torch.cat(ys).sum().backward()

    return run


def sequence(module: torch.nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.set_grad_enabled(train):
            y, _ = module(x)
            if train:
                y[-1].sum().backward()

    return run


def twins(torch_cls: type, our_cls: type, *args: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torch.nn's module and rnnfast's with the same weights."""
    native, ours = torch_cls(*args), our_cls(*args)
    ours.load_state_dict(native.state_dict())
    return native, ours


def timed(fns: dict[str, Callable[[], None]], a: argparse.Namespace) -> tuple[dict, str]:
    """Microseconds a step of each loop (medians of interleaved rounds), and "  ~" when a
    spread is above rnnfast._timing's flag."""
    t = interleaved(fns, rounds=a.rounds, min_time=a.seconds)
    per = {k: 1e3 * v.median / a.steps for k, v in t.items()}
    return per, "  ~" if max(v.spread for v in t.values()) > SPREAD_FLAG else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--cells", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=6.0, help="time per loop kind")
    p.add_argument("--modules", action="store_true", help="also time T = 1 module loops")
    a = p.parse_args()
    torch.set_num_threads(rnnfast.get_num_threads())
    print(
        f"{a.steps}-step loops, hidden {a.hidden}, {rnnfast.get_num_threads()} threads, "
        f"torch {torch.__version__}; us a step (medians), vs torch = torch / rnnfast"
    )
    print(
        f"{'cell':9s} {'B':>3s} {'mode':8s} {'torch loop':>11s} {'rnnfast loop':>13s} "
        f"{'vs torch':>9s} {'torch seq':>10s} {'rnnfast seq':>12s}"
    )
    for name in a.cells:
        torch_cell, our_cell, torch_seq, our_seq = PAIRS[name]
        torch.manual_seed(0)
        native, ours = twins(torch_cell, our_cell, a.hidden, a.hidden)
        seq_native, seq_ours = twins(torch_seq, our_seq, a.hidden, a.hidden)
        for batch in a.batch:
            x = torch.randn(a.steps, batch, a.hidden)
            for train in (False, True):
                per, noisy = timed(
                    {
                        "torch": cell_loop(native, x, train),
                        "rnnfast": cell_loop(ours, x, train),
                        "torch seq": sequence(seq_native, x, train),
                        "rnnfast seq": sequence(seq_ours, x, train),
                    },
                    a,
                )
                print(
                    f"{name:9s} {batch:3d} {'train' if train else 'no_grad':8s} "
                    f"{per['torch']:11.1f} {per['rnnfast']:13.1f} "
                    f"{per['torch'] / per['rnnfast']:8.2f}x {per['torch seq']:10.1f} "
                    f"{per['rnnfast seq']:12.1f}{noisy}"
                )

    if a.modules:
        module_table(a)


def module_table(a: argparse.Namespace) -> None:
    print(f"\n{a.steps}-step loops of one-step module calls (y, hx = m(x[t:t+1], hx)), us a step")
    print(
        f"{'module':9s} {'L':>2s} {'B':>3s} {'mode':8s} {'torch':>8s} {'rnnfast':>8s} "
        f"{'vs torch':>9s}"
    )
    for name in a.cells:
        torch_seq, our_seq = PAIRS[name][2:]
        for layers in (1, 2):
            torch.manual_seed(0)
            native, ours = twins(torch_seq, our_seq, a.hidden, a.hidden, layers)
            for batch in a.batch:
                x = torch.randn(a.steps, batch, a.hidden)
                for train in (False, True):
                    fns = {"torch": module_loop(native, x, train)}
                    per, noisy = timed({**fns, "rnnfast": module_loop(ours, x, train)}, a)
                    mode = "train" if train else "no_grad"
                    print(
                        f"{name[:-4]:9s} {layers:2d} {batch:3d} {mode:8s} "
                        f"{per['torch']:8.1f} {per['rnnfast']:8.1f} "
                        f"{per['torch'] / per['rnnfast']:8.2f}x{noisy}"
                    )


if __name__ == "__main__":
    main()
