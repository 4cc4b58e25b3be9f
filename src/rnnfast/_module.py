"""Parameters and Module: named arrays with gradients, and the base of every layer (recurrent
ones in rnnfast._recurrent, Linear in rnnfast.nn); Tape, what a training forward keeps for its
backward. Engine-independent: nothing here touches the C++ core."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from . import _validate as v


class Tape:
    """What a training forward keeps for backward. Use it once, with the module that made it,
    before the module's parameters change."""

    __slots__ = ("_consumed", "_meta", "_module", "_saved")

    def __init__(self, module: Module, saved: Any, meta: dict[str, Any]) -> None:
        self._module = module
        self._saved = saved
        self._meta = meta
        self._consumed = False

    @property
    def dropout_key(self) -> int | None:
        """The key of the dropout masks forward applied (None: no dropout); passing it to forward
        as `dropout_key` repeats them."""
        return self._meta.get("dropout_key")

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of this tape."""
        saved = self._saved
        if saved is not None and hasattr(saved, "nbytes") and not isinstance(saved, np.ndarray):
            return int(saved.nbytes)
        return _nbytes(saved)

    def __repr__(self) -> str:
        state = "consumed" if self._consumed else "ready"
        return f"<rnnfast Tape of {type(self._module).__name__}, {self.nbytes} bytes, {state}>"


def _nbytes(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0


class Parameters(MutableMapping[str, np.ndarray]):
    """A module's parameters by PyTorch's names: read-only views of arrays the module owns.

    Every change goes through here, so the module knows its parameters' version and the fast
    engine may keep weights packed between calls: `params[name] = value` copies `value` in
    (checked and converted like load_state_dict); inside `with params.writable() as w:` the arrays
    `w[name]` may be changed in place (no packed weights are kept while the block is open, and the
    version moves on when it closes). Optimisers, `load_state_dict`, `rnnfast.init` and
    `reset_parameters` use these. Writing into `params[name]` itself raises NumPy's "assignment
    destination is read-only".
    """

    def __init__(self, owner: Module, arrays: dict[str, np.ndarray]) -> None:
        self._owner = owner
        self._arrays = arrays
        self._views: dict[str, np.ndarray] = {}
        self._editing = 0
        self._make_views()

    def _make_views(self) -> None:
        self._views = {}
        for name, a in self._arrays.items():
            view = a.view()
            view.flags.writeable = False
            self._views[name] = view

    def __getstate__(self) -> dict[str, Any]:
        return {"owner": self._owner, "arrays": self._arrays}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._owner = state["owner"]
        self._arrays = state["arrays"]
        self._editing = 0
        self._make_views()

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._arrays:
            raise KeyError(f"params: no parameter {name!r}; this module has {list(self._arrays)}")
        target = self._arrays[name]
        arr = v.as_float_array(value, f"params[{name!r}]", target.dtype, convert_floats=True)
        v.check_shape(arr, f"params[{name!r}]", target.shape)
        target[...] = arr
        self._owner._params_changed()

    def __delitem__(self, name: str) -> None:
        raise TypeError("params: parameters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {a.shape}" for k, a in self._arrays.items())
        return f"Parameters({shapes})"

    @contextlib.contextmanager
    def writable(self) -> Iterator[dict[str, np.ndarray]]:
        """The parameter arrays themselves, to change in place (see the class docstring)."""
        self._editing += 1
        self._owner._params_changed()
        try:
            yield dict(self._arrays)
        finally:
            self._editing -= 1
            self._owner._params_changed()


class Module:
    """Parameters as named NumPy arrays (`params`, read-only views; see `Parameters`), their
    gradients (`grads`, accumulated by backward like PyTorch's .grad), and state dicts of copies.

    Thread safety: forward calls may run concurrently on one module; backward calls too (their
    additions to `grads` are serialised by a lock). Changing parameters or grads while another
    thread runs forward or backward on the module is not safe, as in any framework.
    """

    dtype: np.dtype
    params: Parameters
    grads: dict[str, np.ndarray]
    _version: int = 0
    _grad_lock: threading.Lock

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_grad_lock", None)  # a lock is neither copied nor pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.dtype = np.dtype(self.dtype.name)  # NumPy's own instance, not an unpickled twin
        self._grad_lock = threading.Lock()

    def _params_changed(self) -> None:
        self._version += 1

    def _param_version(self) -> int:
        """The version the engine keys packed weights on: -1 (keep none) while params are being
        edited in place."""
        return -1 if self.params._editing else self._version

    def _init_uniform(self, bound: float, seed: int | None) -> None:
        """Every parameter uniform in [-bound, bound] (PyTorch's default schemes), seeded;
        gradients zeroed."""
        if not hasattr(self, "_grad_lock"):
            self._grad_lock = threading.Lock()
        rng = np.random.default_rng(v.check_seed(seed))
        values = {
            name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            for name, shape in self._param_shapes().items()
        }
        if isinstance(getattr(self, "params", None), Parameters):  # re-initialise in place
            with self.params.writable() as arrays:
                for name, value in values.items():
                    arrays[name][...] = value
        else:
            self.params = Parameters(self, values)
            self.grads = {name: np.zeros_like(p) for name, p in values.items()}
        self.zero_grad()

    def _take_tape(self, tape: Any) -> Any:
        """What `tape` saved, after checking it was made by this module, is not used yet, and the
        parameters have not changed since."""
        if not isinstance(tape, Tape):
            raise TypeError(
                "tape: expected the Tape returned by forward(training=True), "
                f"got {type(tape).__name__}"
            )
        if tape._module is not self:
            raise ValueError(
                "tape: it was made by another module; use it with the module whose forward made it"
            )
        if tape._consumed:
            raise ValueError("tape: already used by backward; run forward(training=True) again")
        made = tape._meta.get("version")
        if made is not None and made >= 0 and made != self._param_version():
            raise ValueError(
                "tape: the parameters changed since the forward that made it (an optimiser step, "
                "load_state_dict, ...); its gradient would be of neither. Run forward again"
            )
        return tape._saved

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, keyed by PyTorch's names."""
        return {name: np.array(p) for name, p in self.params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Loads parameters in place, e.g. a PyTorch module's
        `{k: t.numpy() for k, t in torch_rnn.state_dict().items()}`.

        Keys must match exactly; values are converted to the module dtype. Nothing is loaded unless
        everything checks out.
        """
        expected = self._param_shapes()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        loaded = {}
        for name, shape in expected.items():
            arr = v.as_float_array(
                state[name], f"state_dict[{name!r}]", self.dtype, convert_floats=True
            )
            v.check_shape(arr, f"state_dict[{name!r}]", shape)
            loaded[name] = arr
        with self.params.writable() as arrays:
            for name, arr in loaded.items():
                arrays[name][...] = arr
