"""A one-line progress display on stderr: rewritten in place on a terminal, a line every few
seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, *, every_s: float = 5.0) -> None:
        self.total = total
        self.every_s = every_s
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int, text: str) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < (0.2 if self.tty else self.every_s):
            return
        self.last = now
        width = 24
        filled = int(width * done / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {text}"
        if self.tty:
            print(f"\r{line[:150]:<150}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)
