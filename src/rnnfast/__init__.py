"""rnnfast: fast CPU forward and BPTT for Elman RNN, LSTM and GRU, PyTorch-compatible.

`rnnfast.RNN`, `rnnfast.LSTM` and `rnnfast.GRU` run on the C++ core; `rnnfast.reference` holds
the same classes in plain NumPy (the oracle the core is tested against). The training toolkit:
`nn` (Linear, losses), `clip`, `init`, `optim`, `tbptt` (truncated BPTT) and `tasks`.
"""

from __future__ import annotations

from typing import Any

from . import _core, clip, init, nn, optim, reference, tasks, tbptt
from ._fast import FastEngine
from ._modules import GRUBase, LSTMBase, Module, RecurrentBase, RNNBase, Tape
from ._validate import check_int

__version__: str = _core.__version__

_FAST = FastEngine()


class RNN(RNNBase):
    __doc__ = RNNBase.__doc__
    _engine = _FAST


class LSTM(LSTMBase):
    __doc__ = LSTMBase.__doc__
    _engine = _FAST


class GRU(GRUBase):
    __doc__ = GRUBase.__doc__
    _engine = _FAST


MAX_THREADS: int = _core.MAX_THREADS


def set_num_threads(n: int) -> None:
    """Threads the C++ kernels may use (default: OMP_NUM_THREADS, else all cores), at most
    MAX_THREADS. Raises RuntimeError, keeping the previous count, when n threads cannot be
    started here (libgomp would end the process instead)."""
    count = check_int(n, "n")
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(f"n: expected a number of threads in [1, {MAX_THREADS}], got {count}")
    _core.set_num_threads(count)


def get_num_threads() -> int:
    """The thread count kernels use: the setting, or 1 in a process forked after rnnfast ran a
    team of threads (libgomp's threads do not survive fork)."""
    return int(_core.usable_threads())


def isa() -> str:
    """The instruction set the kernels use: avx512, avx2, neon or generic.

    The best one this CPU and OS support is chosen at import; the environment variable
    RNNFAST_ISA (set before import) forces a lower one, and an unsupported value fails the import.
    """
    return str(_core.isa())


def show_config() -> dict[str, Any]:
    """What this build runs with: version, ISA (and the others runnable here), compiler,
    OpenMP and threads."""
    return {
        "version": __version__,
        "isa": isa(),
        "supported_isas": list(_core.supported_isas()),
        "compiler": _core.compiler(),
        "openmp": bool(_core.have_openmp()),
        "num_threads": get_num_threads(),
    }


__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Module",
    "RecurrentBase",
    "Tape",
    "__version__",
    "clip",
    "get_num_threads",
    "init",
    "isa",
    "nn",
    "optim",
    "reference",
    "set_num_threads",
    "show_config",
    "tasks",
    "tbptt",
]
