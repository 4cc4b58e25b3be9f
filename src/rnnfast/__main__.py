"""Command line: `rnnfast bench`, `rnnfast train TASK`, `rnnfast charrnn train|sample`
(also `python -m rnnfast ...`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    from . import __version__, bench, charrnn, train

    parser = Parser(prog="rnnfast", description="Fast CPU RNN, LSTM and GRU.")
    parser.add_argument("--version", action="version", version=f"rnnfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    bench.add_arguments(
        sub.add_parser("bench", help="time rnnfast against the reference and PyTorch")
    )
    train.add_arguments(
        sub.add_parser("train", help="train on a long-range-dependency task"),
        positive_int,
        positive_float,
    )
    charrnn.add_arguments(
        sub.add_parser("charrnn", help="character-level language model"),
        positive_int,
        positive_float,
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            return bench.run(args)
        if args.command == "charrnn":
            return charrnn.main(args)
        return train.main(args)
    except (ValueError, OSError, KeyError) as exc:  # the user's input: one line, no traceback
        print(f"rnnfast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnfast {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
