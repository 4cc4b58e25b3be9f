"""rnnfast: fast CPU forward and BPTT for Elman RNN, LSTM and GRU, PyTorch-compatible.

`rnnfast.RNN`, `rnnfast.LSTM` and `rnnfast.GRU` run on the C++ core; `rnnfast.reference` holds
the same classes in plain NumPy (the oracle the core is tested against). The training toolkit:
`nn` (Linear, losses), `clip`, `init`, `optim`, `tbptt` (truncated BPTT) and `tasks`.

Only the extension is loaded at import (so a bad RNNFAST_ISA fails here); every other name is
imported on first use (PEP 562), which keeps `import rnnfast` and the command line quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._openmp import libgomp_spin_limit

with libgomp_spin_limit():
    from . import _core
from ._paths import get_cmake_dir, get_include, get_library_dir
from ._runtime import MAX_THREADS, get_num_threads, isa, set_num_threads, show_config

__version__: str = _core.__version__

# `torch` (the PyTorch adapter) imports PyTorch, so only on first use.
_SUBMODULES = {
    "checkpoint",
    "clip",
    "diagnostics",
    "init",
    "nn",
    "onnx",
    "optim",
    "reference",
    "tasks",
    "tbptt",
    "torch",
}
_NAMES = {
    "RNN": "_fast",
    "LSTM": "_fast",
    "GRU": "_fast",
    "Module": "_module",
    "RecurrentBase": "_recurrent",
    "StepState": "_recurrent",
    "Tape": "_module",
}

if TYPE_CHECKING:
    from . import checkpoint, clip, diagnostics, init, nn, optim, reference, tasks, tbptt
    from ._fast import GRU, LSTM, RNN
    from ._module import Module, Tape
    from ._recurrent import RecurrentBase, StepState


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # found once, then a plain attribute
        return value
    raise AttributeError(f"module 'rnnfast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_NAMES))


__all__ = [
    "GRU",
    "LSTM",
    "MAX_THREADS",
    "RNN",
    "Module",
    "RecurrentBase",
    "StepState",
    "Tape",
    "__version__",
    "checkpoint",
    "clip",
    "diagnostics",
    "get_cmake_dir",
    "get_include",
    "get_library_dir",
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
