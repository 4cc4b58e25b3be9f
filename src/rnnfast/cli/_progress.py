"""Training progress on stderr: a bar with an ETA that fits the terminal, a plain line every few
seconds when stderr is not a terminal (logs, CI), nothing with --quiet.

On a terminal the bar is tqdm's when tqdm is installed (it is optional: rnnfast needs only
NumPy), else a one-line bar of rnnfast's own that is cut to the terminal's width. A run bounded
by time (`seconds`, e.g. charrnn's --minutes) fills its bar by time when that ends first.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "?"
    s = round(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def fit_words(text: str, room: int) -> str:
    """`text` cut to at most `room` characters: whole comma-separated parts ("loss 1.23 nats,
    456 chars/s" loses ", 456 chars/s"), else whole words, never inside a figure."""
    if len(text) <= room:
        return text
    out = ""
    for part in text.split(", "):
        longer = f"{out}, {part}" if out else part
        if len(longer) > room:
            break
        out = longer
    if out:
        return out
    for word in text.split(" "):
        longer = f"{out} {word}" if out else word
        if len(longer) > room:
            break
        out = longer
    return out.rstrip(",")


class Progress:
    """`update(done, text)` after each step; `close()` at the end. `total` steps, and at most
    `seconds` of time if given (whichever ends first decides the bar and the ETA)."""

    def __init__(
        self,
        total: int,
        *,
        seconds: float | None = None,
        quiet: bool = False,
        stream: TextIO | None = None,
        every_s: float = 5.0,
        use_tqdm: bool | None = None,
    ) -> None:
        self.total = max(int(total), 1)
        self.seconds = seconds if seconds and seconds != float("inf") else None
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.start = time.monotonic()
        self.last = -1e9
        self.start_done: int | None = None
        self.bar: Any = None
        if not quiet and self.tty and use_tqdm is not False:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]
            except ImportError:
                tqdm = None
            if tqdm is not None:
                by_time = self.seconds is not None
                self.bar = tqdm(
                    total=round(self.seconds or 0) if by_time else self.total,
                    unit="s" if by_time else "step",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
                )

    def fraction(self, done: int) -> float:
        """How far the run is: of its steps, or of its time when that is the tighter bound."""
        by_steps = done / self.total
        if self.seconds is None:
            return min(by_steps, 1.0)
        return min(max(by_steps, (time.monotonic() - self.start) / self.seconds), 1.0)

    def eta(self, done: int) -> float:
        if self.start_done is None or done <= self.start_done:
            return float("nan")
        elapsed = time.monotonic() - self.start
        per_step = elapsed / (done - self.start_done)
        left = (self.total - done) * per_step
        if self.seconds is not None:
            left = min(left, self.seconds - elapsed)
        return max(left, 0.0)

    def update(self, done: int, text: str = "") -> None:
        if self.quiet:
            return
        if self.start_done is None:
            self.start_done, self.start = done, time.monotonic()
            return
        now = time.monotonic()
        if self.bar is not None:
            n = min(now - self.start, self.seconds) if self.seconds else done
            self.bar.n = round(n) if self.seconds else n
            if self.seconds:  # the bar counts seconds: the steps go in the text
                text = f"step {done}, {text}" if text else f"step {done}"
            width = shutil.get_terminal_size((80, 24)).columns - 1
            # tqdm cuts a line wider than the terminal wherever it falls: leave room for its
            # percentage, a 10-column bar, the counts and the times.
            fixed = 40 + 2 * len(str(self.bar.total))
            self.bar.set_postfix_str(fit_words(text, max(width - fixed, 0)), refresh=False)
            self.bar.refresh()
            return
        finished = done >= self.total
        if not finished and now - self.last < (0.2 if self.tty else self.every_s):
            return
        self.last = now
        head = f"{100 * self.fraction(done):3.0f}% {self._count(done)}"
        eta = f"ETA {_clock(self.eta(done))}"
        if not self.tty:
            print(f"{head} {eta} {text}".rstrip(), file=self.stream, flush=True)
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1  # the last column wraps
        text = fit_words(text, width - len(head) - len(eta) - 10)  # 10: the bar's least
        tail = f"{eta} {text}".rstrip()
        bar_width = max(min(24, width - len(head) - len(tail) - 4), 5)
        filled = int(bar_width * self.fraction(done))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {head} {tail}"
        print(f"\r{fit_words(line, width)}\x1b[K", end="", file=self.stream, flush=True)

    def _count(self, done: int) -> str:
        """done/total steps, or time spent/allowed when the time bound is the tighter one (a
        run of --minutes has a step bound of 10^9 that says nothing)."""
        if self.seconds is not None:
            spent = time.monotonic() - self.start
            if done <= 0 or spent * self.total / done >= self.seconds:  # time ends it first
                return f"{_clock(spent)}/{_clock(self.seconds)} step {done}"
        return f"{done}/{self.total}"

    def write(self, message: str) -> None:
        """A message on its own lines, above the bar (which goes on after it)."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
            return
        if self.tty and not self.quiet:
            print("\r\x1b[K", end="", file=self.stream)
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            print(file=self.stream, flush=True)
