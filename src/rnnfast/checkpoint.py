"""Checkpoints as .npz files: named arrays plus a JSON header, written atomically.

`save` writes to a temporary file beside the target, flushes it to disk and renames it over the
target (`os.replace` is atomic on POSIX and Windows), so an interrupted write leaves the previous
checkpoint intact and never a half-written one. A temporary file is named after the target and
the writing process (`.NAME.PID.TOKEN.tmp`); one left by a process that no longer runs (killed
mid-save) is removed by the next save of that target. Files are created with the usual
permissions (0666 less the umask), as `open()` would.

Every way a file can fail to be a checkpoint (missing, truncated, not a zip, a bare .npy, a
header that is not the expected JSON) raises `CheckpointError`, a ValueError naming the file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_META = "__meta__"
FORMAT = "rnnfast-checkpoint"


class CheckpointError(ValueError):
    """A file that cannot be read (or written) as an rnnfast checkpoint; says which and why."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file alone
    return True


def _remove_stale_temporaries(target: Path) -> None:
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike, what: str = "a checkpoint") -> None:
    """Raises CheckpointError unless `what` can be written at `path` (checked by creating and
    removing a file beside it): call it before hours of work, not after."""
    target = Path(path)
    if target.is_dir():
        raise CheckpointError(f"{path}: is a directory; give a file name for {what}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc
        raise CheckpointError(f"{path}: cannot write {what} there ({reason})") from None


def save(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    header = {"format": FORMAT, **meta}
    payload[_META] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, header). Raises CheckpointError for a file that is not an rnnfast checkpoint."""
    try:
        f = open(path, "rb")  # closed below: np.load(path) leaks its file on errors
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with f:
        try:
            data = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: a single .npy array, not an rnnfast checkpoint (.npz)")
        try:
            with data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise CheckpointError(
                f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})"
            ) from None
    if _META not in arrays:
        raise CheckpointError(f"{path}: not an rnnfast checkpoint (no {_META} header)")
    raw = arrays.pop(_META)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: damaged checkpoint (its header is not JSON)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: damaged checkpoint (its header is a JSON {type(meta).__name__}, "
            "not an object)"
        )
    return arrays, meta


def _type_name(types: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list"}
    names.update({dict: "an object", bool: "true or false"})
    return " or ".join(names[t] for t in (types if isinstance(types, tuple) else (types,)))


def field(meta: Mapping[str, Any], key: str, types: Any, path: Any, where: str = "header") -> Any:
    """meta[key], checked to be of `types` (an int passes for a float, a bool for nothing else)."""
    if key not in meta:
        raise CheckpointError(f"{path}: damaged checkpoint ({where} has no {key!r})")
    value = meta[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if float in allowed:
        allowed = (*allowed, int)
    if isinstance(value, bool) != (bool in allowed) or not isinstance(value, allowed):
        raise CheckpointError(
            f"{path}: damaged checkpoint ({where} {key!r} should be {_type_name(types)}, "
            f"got {value!r})"
        )
    return value


def config_from(
    meta: Mapping[str, Any], cls: Any, path: Any, kind: str, optional: tuple[str, ...] = ()
) -> Any:
    """The dataclass `cls` from header["config"], every field present and of its declared type
    (fields named in `optional` may be missing: files from before they existed)."""
    config = field(meta, "config", dict, path)
    fields = cls.__dataclass_fields__
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{path}: not a checkpoint of {kind} (its configuration has unknown keys {unknown})"
        )
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    values = {}
    for name, f in fields.items():
        if name in optional and name not in config:
            continue
        annotation = str(f.type)
        expected = next((t for k, t in kinds.items() if annotation == k), list)
        values[name] = field(config, name, expected, path, where="configuration")
    return cls(**values)


def module_arrays(prefix: str, module: Any) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for k, v in module.params.items()}


def optimizer_arrays(opt: Any) -> dict[str, np.ndarray]:
    return {f"optim.{key}.{name}": a for key, s in opt.state.items() for name, a in s.items()}


def restore(
    arrays: Mapping[str, np.ndarray],
    modules: Mapping[str, Any],
    opt: Any,
    opt_meta: Mapping[str, Any],
    path: Any = "checkpoint",
) -> None:
    """Loads module parameters and optimiser state saved by module_arrays/optimizer_arrays;
    anything that does not fit raises CheckpointError naming `path`."""
    try:
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
            {
                "type": field(opt_meta, "type", str, path, "optimiser header"),
                "t": field(opt_meta, "t", int, path, "optimiser header"),
                "hyper": field(opt_meta, "hyper", dict, path, "optimiser header"),
                "state": state,
            }
        )
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CheckpointError(f"{path}: does not fit this model ({message})") from None


__all__ = [
    "CheckpointError",
    "check_writable",
    "config_from",
    "field",
    "load",
    "module_arrays",
    "optimizer_arrays",
    "restore",
    "save",
]
