"""Checkpoints as .npz files: named arrays plus a JSON header, written atomically.

`save` writes to a temporary file in the target's folder, flushes it to disk and renames it
over the target (`os.replace` is atomic on POSIX and Windows), so an interrupted write leaves
the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_META = "__meta__"


def save(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[_META] = np.frombuffer(json.dumps(dict(meta)).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta). Raises ValueError for a file that is not an rnnfast checkpoint."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc
    if _META not in arrays:
        raise ValueError(f"{path}: not an rnnfast checkpoint (no header)")
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    return arrays, meta


def module_arrays(prefix: str, module: Any) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for k, v in module.params.items()}


def optimizer_arrays(opt: Any) -> dict[str, np.ndarray]:
    return {f"optim.{key}.{name}": a for key, s in opt.state.items() for name, a in s.items()}


def restore(
    arrays: Mapping[str, np.ndarray],
    modules: Mapping[str, Any],
    opt: Any,
    opt_meta: Mapping[str, Any],
) -> None:
    """Loads module parameters and optimiser state saved by module_arrays/optimizer_arrays."""
    for prefix, m in modules.items():
        m.load_state_dict(
            {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}
        )
    state: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("optim."):
            key, name = k[len("optim.") :].rsplit(".", 1)
            state.setdefault(key, {})[name] = v
    opt.load_state_dict(
        {"type": opt_meta["type"], "t": opt_meta["t"], "hyper": opt_meta["hyper"], "state": state}
    )


__all__ = ["load", "module_arrays", "optimizer_arrays", "restore", "save"]
