"""Command line: `rnnfast bench` (also `python -m rnnfast bench`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from . import __version__, bench

    parser = argparse.ArgumentParser(prog="rnnfast", description="Fast CPU RNN, LSTM and GRU.")
    parser.add_argument("--version", action="version", version=f"rnnfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_arguments(sub.add_parser("bench", help="time the fast engine against the reference"))
    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench.run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
