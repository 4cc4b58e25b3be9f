"""How long libgomp's idle threads spin, set for rnnfast's copy when it loads.

Between parallel regions libgomp's worker threads spin GOMP_SPINCOUNT times before they sleep;
its default, 300,000 turns of a `pause` loop, keeps both cores busy for milliseconds after each
of rnnfast's calls. Whatever runs next in the process pays for it: onnxruntime's decoder MatMul
right after an rnnfast LSTM node took 11.5 ms instead of 8.2 (benchmarks/ort_session_vs_ort.py).
30,000 turns still bridge the gap between one call and the next (a T=1 call and a 100-step B=1
call keep their speed) and give the cores back soon after. libgomp reads the variable once,
when it is loaded, so it is set just for the import of the extension and removed again: the
process's environment (and its children's) is left as it was. A user's GOMP_SPINCOUNT or
OMP_WAIT_POLICY wins; so does a libgomp that something else loaded first (a wheel's own copy,
as auditwheel makes it, is only ever loaded by rnnfast). PyTorch's wheels load their own libgomp
under the same name: imported before rnnfast, it is the one rnnfast runs on, with libgomp's
default (an rnnfast session in onnxruntime at B = 16 then ran at 0.74x onnxruntime's speed
instead of 0.94-0.97x: benchmarks/ort_session_vs_ort.py --torch-first). `spin_setting()` says
which case this process is in (`rnnfast.show_config()["libgomp_spin"]`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

SPINCOUNT = "30000"

# Who decided the spinning of the libgomp rnnfast runs on (set once, at rnnfast's import):
# "rnnfast" (rnnfast's load set SPINCOUNT), "user" (GOMP_SPINCOUNT or OMP_WAIT_POLICY set),
# "loaded before rnnfast" (a libgomp was already in the process: whatever its loader had,
# libgomp's default unless set then), "no libgomp" (another OpenMP runtime, or none), or
# "unknown" (no /proc/self/maps to tell).
_setting = "unknown"


def spin_setting() -> str:
    return _setting


def _libgomp_loaded() -> bool | None:
    """Whether a libgomp is mapped into this process (Linux's /proc/self/maps; None elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return None


@contextmanager
def libgomp_spin_limit() -> Iterator[None]:
    global _setting
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        _setting = "user"
        yield
        return
    before = _libgomp_loaded()
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
    if before:
        _setting = "loaded before rnnfast"
    elif before is False:
        _setting = "rnnfast" if _libgomp_loaded() else "no libgomp"
