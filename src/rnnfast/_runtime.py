"""Threads, the instruction set and the build: rnnfast's few process-wide settings.

Imports nothing but the extension, so `import rnnfast` stays cheap.
"""

from __future__ import annotations

import operator
import os
from typing import Any

from . import _core
from ._openmp import spin_setting

MAX_THREADS: int = _core.MAX_THREADS

# Part of the thread setting: whether the user chose the count (set_num_threads or
# OMP_NUM_THREADS), so that the PyTorch adapter follows torch's count only when nobody did.
_chosen = {"explicit": bool(os.environ.get("OMP_NUM_THREADS"))}


def threads_chosen() -> bool:
    """Whether the thread count was set by set_num_threads or OMP_NUM_THREADS."""
    return _chosen["explicit"]


def set_num_threads(n: int) -> None:
    """Threads the C++ kernels may use (default: OMP_NUM_THREADS, else all cores), at most
    MAX_THREADS. Raises RuntimeError, keeping the previous count, when n threads cannot be
    started here (libgomp would end the process instead)."""
    if isinstance(n, bool):
        raise TypeError("n: expected an integer, got bool")
    try:
        count = operator.index(n)
    except TypeError:
        raise TypeError(f"n: expected an integer, got {type(n).__name__}") from None
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(f"n: expected a number of threads in [1, {MAX_THREADS}], got {count}")
    _core.set_num_threads(count)
    _chosen["explicit"] = True


def get_num_threads() -> int:
    """The thread count kernels use: the setting, or 1 in a process forked after rnnfast ran a
    team of threads (libgomp's threads do not survive fork)."""
    return int(_core.usable_threads())


def isa() -> str:
    """The instruction set the kernels use: avx512_bf16, avx512, avx2, neon or generic
    (avx512_bf16: AVX-512 with AVX512_BF16, whose bfloat16 products run in vdpbf16ps).

    The best one this CPU and OS support is chosen at import; the environment variable
    RNNFAST_ISA (set before import) forces a lower one, and an unsupported value fails the import.
    """
    return str(_core.isa())


def show_config() -> dict[str, Any]:
    """What this build runs with: version, ISA (and the others runnable here), compiler,
    OpenMP, threads, and who set how long idle OpenMP threads spin (src/rnnfast/_openmp.py)."""
    return {
        "version": _core.__version__,
        "isa": isa(),
        "supported_isas": list(_core.supported_isas()),
        "compiler": _core.compiler(),
        "openmp": bool(_core.have_openmp()),
        "num_threads": get_num_threads(),
        "libgomp_spin": spin_setting(),
    }


__all__ = ["MAX_THREADS", "get_num_threads", "isa", "set_num_threads", "show_config"]
