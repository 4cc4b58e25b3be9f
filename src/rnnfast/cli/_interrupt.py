"""Stopping a training loop cleanly on Ctrl-C (SIGINT) or SIGTERM.

Inside `StopOnSignal()` the first signal only sets `requested` (the loop checks it between
steps, so a checkpoint is never written halfway through an optimiser update); a second one
raises KeyboardInterrupt at once. Handlers are installed from the main thread only and restored
on exit.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    def __init__(self) -> None:
        self.requested: int | None = None  # the signal number, once one arrived
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process stopped by it."""
        return 128 + (self.requested or signal.SIGINT)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            # A Ctrl-C before the loop whose KeyboardInterrupt Python dropped (raised inside a
            # finalizer; rnnfast.cli.main keeps it on its handler): raised again here, as if it
            # came now, before any step or checkpoint.
            if getattr(signal.getsignal(signal.SIGINT), "fired", None):
                raise KeyboardInterrupt
            for sig in SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
