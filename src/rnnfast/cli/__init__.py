"""Command line: `rnnfast bench`, `rnnfast train TASK`, `rnnfast charrnn train|sample`,
`rnnfast gradflow` (also `python -m rnnfast ...`). Each command is a module here with
`add_arguments(parser)` and `main(args)`; the helpers they share are the private modules beside
them.

A user's mistake (a bad option, an unreadable file, a run that does not fit in memory) is one
line on stderr and a non-zero exit, never a traceback; so is Ctrl-C, at any point (exit 130).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it says it already or has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2, and help texts
    give defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _run(argv: Sequence[str] | None, interrupted: list[int]) -> int:
    try:
        from .. import __version__
        from . import bench, charrnn, gradflow, train
    except ImportError:
        if interrupted:  # NumPy turns a Ctrl-C during its own import into an ImportError
            raise KeyboardInterrupt from None
        raise

    parser = Parser(prog="rnnfast", description="Fast CPU RNN, LSTM and GRU.")
    parser.add_argument("--version", action="version", version=f"rnnfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    bench.add_arguments(
        sub.add_parser("bench", help="time rnnfast against the reference and PyTorch")
    )
    train.add_arguments(sub.add_parser("train", help="train on a long-range-dependency task"))
    charrnn.add_arguments(sub.add_parser("charrnn", help="character-level language model"))
    gradflow.add_arguments(
        sub.add_parser("gradflow", help="draw how gradients vanish or survive through time")
    )
    args = parser.parse_args(argv)
    if interrupted:  # a Ctrl-C whose KeyboardInterrupt Python dropped (see main)
        raise KeyboardInterrupt
    name = f"rnnfast {args.command}"
    try:
        if args.command == "bench":
            return bench.main(args)
        if args.command == "charrnn":
            return charrnn.main(args)
        if args.command == "gradflow":
            return gradflow.main(args)
        return train.main(args)
    except (ValueError, OSError) as exc:  # the user's input: one line, no traceback
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        detail = str(exc) or "out of memory"
        print(
            f"{name}: error: this run does not fit in memory ({detail}); "
            "use smaller sizes (--hidden, --batch, --seq-len) or a smaller corpus",
            file=sys.stderr,
        )
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    interrupted: list[int] = []

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    # Python runs a signal's handler wherever the main thread is, a finalizer or a weakref
    # callback included, and there the KeyboardInterrupt is reported as unraisable and dropped:
    # the run went on as if no Ctrl-C had come. The signal is kept in `interrupted` all the
    # same: start-up checks it once parsed, and a training loop's StopOnSignal finds it on this
    # handler (its `fired`) before it takes over, and raises it. The dropped exception's report
    # is left out.
    on_sigint.fired = interrupted  # type: ignore[attr-defined]
    previous_hook = sys.unraisablehook

    def quiet_dropped_interrupt(unraisable: Any) -> None:
        if not (interrupted and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    sys.unraisablehook = quiet_dropped_interrupt
    try:
        return _run(argv, interrupted)
    except KeyboardInterrupt:  # at any point, start-up included
        print("rnnfast: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.unraisablehook = previous_hook
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


__all__ = ["Parser", "main"]
