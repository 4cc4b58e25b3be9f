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
as auditwheel makes it, is only ever loaded by rnnfast).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

SPINCOUNT = "30000"


@contextmanager
def libgomp_spin_limit() -> Iterator[None]:
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
