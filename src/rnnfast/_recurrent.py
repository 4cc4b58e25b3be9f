"""The recurrent layers' engine-independent part: argument checks, state handling and the
PyTorch-style API of RNN, LSTM and GRU, over an engine (the C++ core in `rnnfast`, NumPy in
`rnnfast.reference`); engines see only checked, time-major, C-contiguous arrays of the module
dtype. The extension is imported only where a C++ stack is built, so the NumPy oracle does not
depend on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Union

import numpy as np

from . import _validate as v
from ._cells import CELLS as _CELL_KINDS
from ._module import Module, Tape

if TYPE_CHECKING:
    from . import _core

State = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]

# What each cell is (gates, cell state): rnnfast._cells (checked against the C++ core's table).
CELLS: dict[str, dict[str, Any]] = {
    name: {"gates": k.gates, "cell_state": k.cell_state} for name, k in _CELL_KINDS.items()
}


class Engine(Protocol):
    """What a concrete engine implements. Arrays are time-major: x (T, B, I) (or int64 (T, B):
    indices of one-hot rows; (B,) for step), y (T, B, D*S), h states (L*D, B, S) and c states
    (L*D, B, H), or None for zeros, where S is the state width (proj_size if set, else H).
    `c0`/`c_n` are None except for LSTM. `dropout` is (p, key) when forward drops values between
    layers (the masks of rnnfast.reference.dropout_factors); backward applies the same masks."""

    def attach(self, module: RecurrentBase) -> None: ...

    def forward(
        self,
        module: RecurrentBase,
        x: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        training: bool,
        dropout: tuple[float, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]: ...

    def backward(
        self,
        module: RecurrentBase,
        saved: Any,
        dy: np.ndarray | None,
        dh_n: np.ndarray | None,
        dc_n: np.ndarray | None,
        input_grad: bool = True,
        state_grads: bool = False,
    ) -> tuple[np.ndarray | None, ...]: ...

    def step(self, module: RecurrentBase, x: np.ndarray, state: StepState) -> None: ...


class StepState:
    """What `step` carries from one timestep to the next: `h` (num_layers, B, S) and, for LSTM, `c`
    (num_layers, B, H), updated in place by each step, and `y` (B, S), the last step's output,
    overwritten by the next (copy it to keep it); S is proj_size if set, else hidden_size. Made
    by `module.step_state(batch)`, or by `step` from a state given as forward takes it."""

    __slots__ = ("_module", "batch", "c", "h", "y")

    def __init__(self, module: RecurrentBase, batch: int) -> None:
        layers = module.num_layers * module.num_directions
        self._module = module
        self.batch = batch
        self.h = np.zeros((layers, batch, module._state_size), module.dtype)
        cell = (layers, batch, module.hidden_size)
        self.c = np.zeros(cell, module.dtype) if module._has_cell_state else None
        self.y = np.zeros((batch, module._state_size), module.dtype)

    @property
    def state(self) -> State:
        """The state as forward returns it: h, or (h, c) for LSTM (the arrays themselves)."""
        return self.h if self.c is None else (self.h, self.c)

    def __repr__(self) -> str:
        return f"<rnnfast StepState of {type(self._module).__name__}, batch {self.batch}>"


class RecurrentBase(Module):
    """A stack of recurrent layers with PyTorch's parameter names, shapes and gate order."""

    _engine: ClassVar[Engine]
    _stack: Any  # the C++ engine's _core.Stack (rnnfast._fast), absent for the reference

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: Any = np.float32,
        seed: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.input_size = v.check_size(input_size, "input_size")
        self.hidden_size = v.check_size(hidden_size, "hidden_size")
        self.num_layers = v.check_size(num_layers, "num_layers")
        self.bias = v.check_bool(bias, "bias")
        self.batch_first = v.check_bool(batch_first, "batch_first")
        self.bidirectional = v.check_bool(bidirectional, "bidirectional")
        self.dtype = v.check_dtype(dtype)
        self.dropout = v.check_probability(dropout, "dropout")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout: applies between stacked layers (not after the last one), so with "
                f"num_layers=1 dropout={self.dropout} does nothing",
                UserWarning,
                stacklevel=3,
            )
        # Where training forwards draw their dropout keys: seeded with the parameters' seed (its
        # own stream), so a seeded module repeats its training run.
        self._dropout_rng = np.random.default_rng(
            None if seed is None else [int(v.check_seed(seed) or 0), 0x64726F70]
        )
        self.proj_size = getattr(self, "proj_size", 0)  # set before by an LSTM
        self.peepholes = getattr(self, "peepholes", False)  # likewise
        self._state_size = self.proj_size or self.hidden_size  # h's width, and y's per direction
        # What the cell is, fixed for the module's life (read on every call).
        self._cell = self.cell
        self._gates = int(CELLS[self._cell]["gates"])
        self._has_cell_state = bool(CELLS[self._cell]["cell_state"])
        self._shapes = self._compute_param_shapes()
        self.reset_parameters(seed)
        self.precision = precision  # checked against the dtype and the engine
        self._engine.attach(self)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_stack", None)  # the C++ side is rebuilt, not pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_precision", "fp32")  # pickled before precision existed
        super().__setstate__(state)
        self._engine.attach(self)

    @property
    def precision(self) -> str:
        """What the products compute in: "fp32" (the module dtype, float64 included; the
        default) or "bf16" (float32 modules of the C++ engine): weights and the products'
        inputs rounded to bfloat16, sums in float32 (the weight gradients' products too, added to
        float32 gradients); gate activations, states, outputs and gradients stay float32.
        Settable; the next forward uses it (a tape keeps the precision of the forward that made
        it). Error against float64 (tests/engine/test_bf16.py, every cell and option), for
        outputs, states and gradients: norm-wise within 4u of each array's norm, element-wise
        within (2 + log2 K)u of its largest magnitude, u = 2^-8 (bf16's unit roundoff) and K
        the longest reduction, max(I, H, T*B) (measured: up to 1.8u; 2u at K = 60, 4.6u at
        1088); a ReLU RNN's gradients within 25% norm-wise (a pre-activation near zero can
        flip its derivative)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        allowed = getattr(self._engine, "precisions", ("fp32",))
        if value not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {value!r}")
        if value not in allowed:
            raise ValueError(
                f"precision: {type(self).__module__}.{type(self).__name__} computes in its "
                f"dtype only (expected one of {list(allowed)}, got {value!r})"
            )
        if value == "bf16" and self.dtype != np.float32:
            raise ValueError(
                f"precision: 'bf16' needs a float32 module, this one is {self.dtype.name}"
            )
        self._precision = value

    # --- parameters -------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def cell(self) -> str:
        """The cell kind the engines run: rnn_tanh, rnn_relu, lstm, gru, gru_reset_before."""
        raise NotImplementedError

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return self._shapes

    def _compute_param_shapes(self) -> dict[str, tuple[int, ...]]:
        gh, d = self._gates * self.hidden_size, self.num_directions
        sd = self._state_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            width = self.input_size if layer == 0 else d * sd
            for suffix in ("", "_reverse")[:d]:
                shapes[f"weight_ih_l{layer}{suffix}"] = (gh, width)
                shapes[f"weight_hh_l{layer}{suffix}"] = (gh, sd)
                if self.bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gh,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gh,)
                if self.proj_size:
                    shapes[f"weight_hr_l{layer}{suffix}"] = (self.proj_size, self.hidden_size)
                if self.peepholes:
                    shapes[f"weight_p_l{layer}{suffix}"] = (3 * self.hidden_size,)
        return shapes

    def reset_parameters(self, seed: int | None = None) -> None:
        """PyTorch's default: every parameter uniform in [-1/sqrt(H), 1/sqrt(H)], seeded."""
        self._init_uniform(1.0 / np.sqrt(self.hidden_size), seed)

    def layer_weights(self, layer: int, direction: int) -> tuple[np.ndarray | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh) of one layer and direction (biases None if none)."""
        suffix = "_reverse" if direction else ""
        names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
        if self.bias:
            names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
        out: list[np.ndarray | None] = [self.params[n] for n in names]
        return (*out, None, None) if not self.bias else tuple(out)

    def projection(self, layer: int, direction: int) -> np.ndarray | None:
        """weight_hr of one layer and direction of an LSTM with proj_size, else None."""
        if not self.proj_size:
            return None
        return self.params[f"weight_hr_l{layer}{'_reverse' if direction else ''}"]

    def peephole_weights(self, layer: int, direction: int) -> np.ndarray | None:
        """weight_p (p_i, p_f, p_o) of one layer and direction of an LSTM with peepholes."""
        if not self.peepholes:
            return None
        return self.params[f"weight_p_l{layer}{'_reverse' if direction else ''}"]

    def _ordered(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Arrays in the core's order: for each layer and direction, w_ih, w_hh, b_ih, b_hh,
        w_hr."""
        return [arrays[name] for name in self._shapes]

    def _new_stack(self) -> _core.Stack:
        """A C++ stack of this module's shape (without parameters). (The extension is imported
        here, not at the top: the NumPy oracle, rnnfast.reference, builds on this module and
        must not depend on what it checks.)"""
        from . import _core

        return _core.Stack(
            self.cell,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.bias,
            self.dtype.name,
            self.proj_size,
            self.peepholes,
        )

    def tape_bytes(self, steps: int, batch: int) -> int:
        """Bytes a training forward of T = steps, B = batch keeps for backward (fast engine)."""
        stack = self._new_stack()
        steps, batch = v.check_size(steps, "steps", 0), v.check_size(batch, "batch", 0)
        return int(stack.tape_bytes(steps, batch))

    # --- running ----------------------------------------------------------------------------

    def _to_time_major(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        """x as a C-contiguous (T, B, I) array of the module dtype (maybe the caller's memory),
        and whether x came unbatched, (T, I) (then B = 1)."""
        if (  # the common case, first: already what the engine reads
            type(x) is np.ndarray
            and x.dtype is self.dtype
            and x.ndim == 3
            and x.shape[2] == self.input_size
            and not self.batch_first
            and x.flags.c_contiguous
        ):
            return x, False
        given = np.asarray(x)
        numbers = isinstance(x, (list, tuple, float))
        arr = v.as_float_array(given, name, self.dtype, python_numbers=numbers)
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if arr.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected 3 dimensions {layout}, or 2 (T, I) for one sequence, got "
                f"{arr.ndim} (shape {arr.shape})"
            )
        if arr.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected input size (last dimension) {self.input_size}, "
                f"got {arr.shape[-1]}"
            )
        if arr.ndim == 2:  # one sequence, as torch.nn takes it (whatever batch_first says)
            return np.ascontiguousarray(arr[:, None, :]), True
        return np.ascontiguousarray(arr.transpose(1, 0, 2) if self.batch_first else arr), False

    def _check_ids(self, x: Any, name: str, layout: str) -> np.ndarray:
        """One-hot input given by its indices: an int64 array, each value in [0, input_size)."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "iu":
            raise TypeError(
                f"{name}: with one_hot=True expected integer indices {layout}, "
                f"got dtype {arr.dtype}"
            )
        if arr.ndim != layout.count(",") + (not layout.endswith(",)")):
            raise ValueError(
                f"{name}: with one_hot=True expected indices {layout}, got {arr.ndim} dimensions "
                f"(shape {arr.shape})"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= self.input_size):
            where = np.argwhere((arr < 0) | (arr >= self.input_size))[0]
            raise ValueError(
                f"{name}: expected indices in [0, {self.input_size}) (input_size), "
                f"got {arr[tuple(where)]} at {tuple(int(i) for i in where)}"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _check_state(
        self, state: Any, batch: int, name: str
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The (h, c) arrays of a state, checked; (None, None) for no state (zeros)."""
        layers = self.num_layers * self.num_directions
        shape = (layers, batch, self._state_size)
        h_layout = "(num_layers*D, B, proj_size)" if self.proj_size else "(num_layers*D, B, H)"
        if state is None:
            return None, None
        if self._has_cell_state:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(
                    f"{name}: expected a pair (h, c) for LSTM, got {type(state).__name__}"
                )
            arrays = []
            for part, label in zip(state, ("h", "c")):
                arr = v.as_float_array(part, f"{name}[{label}]", self.dtype)
                if label == "h":
                    v.check_shape(arr, f"{name}[h]", shape, h_layout)
                else:
                    cell = (layers, batch, self.hidden_size)
                    v.check_shape(arr, f"{name}[c]", cell, "(num_layers*D, B, H)")
                arrays.append(np.ascontiguousarray(arr))
            return arrays[0], arrays[1]
        arr = v.as_float_array(state, name, self.dtype)
        v.check_shape(arr, name, shape, h_layout)
        return np.ascontiguousarray(arr), None

    def _pack_state(self, h: np.ndarray, c: np.ndarray | None) -> State:
        if self._has_cell_state:
            assert c is not None
            return (h, c)
        return h

    def forward(
        self,
        x: Any,
        state: State | None = None,
        lengths: Sequence[int] | np.ndarray | None = None,
        training: bool = True,
        *,
        one_hot: bool = False,
        dropout: bool | None = None,
        dropout_key: int | None = None,
    ) -> tuple[np.ndarray, State, Tape | None]:
        """Runs the stack: returns (y, final state, tape). The tape (None unless `training`) feeds
        `backward`. y is (T, B, D*H) ((B, T, D*H) with batch_first); zero past each length.

        With `one_hot=True`, x holds integer indices (T, B) ((B, T) with batch_first), each
        standing for a one-hot row of width input_size: the same result as passing those rows
        (as for characters or tokens without an embedding), without building them; the first
        layer's input product becomes a copy of weight columns. backward's dx is then the gradient
        with respect to the one-hot rows.

        Dropout (the module's `dropout` p > 0, as torch.nn.RNN): each layer's output but the
        last's is multiplied by a random mask of 0 and 1/(1-p) before the next layer reads it.
        `dropout=None` applies it when `training`, True or False always or never. The masks are
        named by a key, drawn from the module's seeded generator unless `dropout_key` is given
        (the same key gives the same masks); the tape records it (`tape.dropout_key`) and
        backward applies the same masks."""
        if training is not True and training is not False:
            training = v.check_bool(training, "training")
        if one_hot is not False:
            one_hot = v.check_bool(one_hot, "one_hot")
        if one_hot:
            unbatched = np.ndim(x) == 1
            layout = "(T,)" if unbatched else "(B, T)" if self.batch_first else "(T, B)"
            ids = self._check_ids(x, "x", layout)
            if unbatched:
                x_tm = ids[:, None]
            else:
                x_tm = np.ascontiguousarray(ids.T if self.batch_first else ids)
        else:
            x_tm, unbatched = self._to_time_major(x, "x")
        steps, batch = x_tm.shape[:2]
        lens = v.as_lengths(lengths, batch, steps)
        if unbatched and state is not None:
            state = self._batch_state(state, "state")
        h0, c0 = self._check_state(state, batch, "state")
        drop = self._dropout_for(training, dropout, dropout_key)
        version = self._param_version()
        y, h_n, c_n, saved = self._engine.forward(self, x_tm, h0, c0, lens, training, drop)
        tape = None
        if training:
            meta = {"steps": steps, "batch": batch, "version": version, "unbatched": unbatched}
            if drop is not None:
                meta["dropout_key"] = drop[1]
            tape = Tape(self, saved, meta)
        if unbatched:
            c_one = None if c_n is None else c_n[:, 0]
            return y[:, 0], self._pack_state(h_n[:, 0], c_one), tape
        y_out = np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y
        return y_out, self._pack_state(h_n, c_n), tape

    def _batch_state(self, state: Any, name: str) -> Any:
        """An unbatched input's state, (num_layers*D, S) (a pair for LSTM), with B = 1 added."""

        def one(part: Any, label: str) -> np.ndarray:
            arr = np.asarray(part)
            if arr.ndim != 2:
                raise ValueError(
                    f"{label}: x is one sequence (2 dimensions), so expected a state of 2 "
                    f"dimensions (num_layers*D, H) without the batch axis, got shape {arr.shape}"
                )
            return arr[:, None, :]

        if self._has_cell_state and isinstance(state, (tuple, list)) and len(state) == 2:
            return (one(state[0], f"{name}[h]"), one(state[1], f"{name}[c]"))
        if self._has_cell_state:
            return state  # _check_state says what is wrong with it
        return one(state, name)

    def _dropout_for(
        self, training: bool, dropout: bool | None, key: int | None
    ) -> tuple[float, int] | None:
        """(p, key) when this forward drops values between layers, else None."""
        apply = training if dropout is None else v.check_bool(dropout, "dropout")
        if key is not None:
            key = v.check_key(key, "dropout_key")
        if not apply or self.dropout == 0 or self.num_layers == 1:
            return None
        if key is None:
            key = int(self._dropout_rng.integers(0, 2**64, dtype=np.uint64))
        return self.dropout, key

    def __call__(
        self,
        x: Any,
        state: State | None = None,
        lengths: Sequence[int] | None = None,
        *,
        one_hot: bool = False,
    ) -> tuple[np.ndarray, State]:
        """Inference, as PyTorch: `y, h_n = rnn(x, h0)`, `y, (h_n, c_n) = lstm(x, (h0, c0))`."""
        y, state_n, _ = self.forward(x, state, lengths, training=False, one_hot=one_hot)
        return y, state_n

    def step_state(self, batch: int = 1) -> StepState:
        """A zero state for `step`, for `batch` sequences."""
        return StepState(self, v.check_size(batch, "batch", 0))

    def step(
        self, x: Any, state: StepState | State | None = None, *, one_hot: bool = False
    ) -> tuple[np.ndarray, StepState]:
        """One timestep, for streaming and sampling: x (B, I) (or (I,) for one sequence) gives
        (y, state), y (B, H) (or (H,)) the top layer's output. A StepState is updated in place and
        nothing is allocated (y lives in it and is overwritten by the next step); None starts from
        zeros, and a state as forward takes it ((num_layers, B, H), or a pair for LSTM) is copied
        into a new StepState. Same result as forward over the steps one at a time. With
        `one_hot=True`, x holds indices: (B,), or one integer for one sequence."""
        if self.bidirectional:
            raise ValueError("step: a bidirectional module needs the whole sequence; use forward")
        unbatched = False
        if one_hot is not False and v.check_bool(one_hot, "one_hot"):
            unbatched = np.ndim(x) == 0
            x = self._check_ids(np.reshape(x, (1,)) if unbatched else x, "x", "(B,)")
        elif not (
            type(x) is np.ndarray
            and x.dtype is self.dtype
            and x.ndim == 2
            and x.shape[1] == self.input_size
            and x.flags.c_contiguous
        ):
            x, unbatched = self._step_input(x)
        batch = x.shape[0]
        if state is None:
            st = StepState(self, batch)
        elif isinstance(state, StepState):
            if state._module is not self:
                raise ValueError("state: a StepState of another module")
            if state.batch != batch:
                raise ValueError(f"state: for batch {state.batch}, x has batch {batch}")
            st = state
        else:
            st = StepState(self, batch)
            h, c = self._check_state(state, batch, "state")
            st.h[...] = h
            if c is not None and st.c is not None:
                st.c[...] = c
        self._engine.step(self, x, st)
        return (st.y[0] if unbatched else st.y), st

    def _step_input(self, x: Any) -> tuple[np.ndarray, bool]:
        """x of step as a C-contiguous (B, I) array, and whether it came unbatched, (I,)."""
        arr = v.as_float_array(x, "x", self.dtype, python_numbers=isinstance(x, (list, tuple)))
        unbatched = arr.ndim == 1
        if unbatched:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise ValueError(
                f"x: expected shape (B, {self.input_size}) or ({self.input_size},), got {arr.shape}"
            )
        return np.ascontiguousarray(arr), unbatched

    def backward(
        self,
        tape: Tape,
        dy: Any = None,
        dstate_n: State | None = None,
        *,
        input_grad: bool = True,
        return_state_grads: bool = False,
    ) -> Any:
        """BPTT: returns (dx, dstate0) and adds the parameter gradients to `self.grads`.

        `dy` has y's shape; `dstate_n` the final state's. Either may be None (zeros). Gradients at
        steps past a sequence's length are ignored (y is a constant zero there). With
        `input_grad=False` dx is not computed (None), as for a PyTorch input that does not
        require grad: one product fewer, e.g. for one-hot characters.

        With `return_state_grads=True` it returns (dx, dstate0, state_grads): dL/dh_t for every
        step, layer and direction, (num_layers*D, T, B, S) ((num_layers*D, B, T, S) with
        batch_first), zero past each length: the total gradient reaching h_t, through y_t and
        through the later steps (how gradients vanish or explode with the distance in time is
        read there; see rnnfast.diagnostics). For LSTM a pair (dL/dh_t, dL/dc_t).
        """
        self._take_tape(tape)
        steps, batch = tape._meta["steps"], tape._meta["batch"]
        width = self.num_directions * self._state_size
        unbatched = tape._meta.get("unbatched", False)
        dy_tm = None
        if unbatched and dy is not None:  # (T, D*S): checked, then given its batch axis
            arr = v.as_float_array(dy, "dy", self.dtype)
            v.check_shape(arr, "dy", (steps, width), "(the shape of y)")
            dy_tm = np.ascontiguousarray(arr[:, None, :])
        elif dy is not None:
            arr = v.as_float_array(dy, "dy", self.dtype)
            expected = (batch, steps, width) if self.batch_first else (steps, batch, width)
            v.check_shape(arr, "dy", expected, "(the shape of y)")
            dy_tm = np.ascontiguousarray(arr.transpose(1, 0, 2) if self.batch_first else arr)
        dh_n = dc_n = None
        if dstate_n is not None:
            if unbatched:
                dstate_n = self._batch_state(dstate_n, "dstate_n")
            dh_n, dc_n = self._check_state(dstate_n, batch, "dstate_n")
        input_grad = v.check_bool(input_grad, "input_grad")
        with_states = v.check_bool(return_state_grads, "return_state_grads")
        with self._grad_lock:  # concurrent backward calls add to the same grads
            self._take_tape(tape)  # again: another thread may have used it meanwhile
            try:
                out = self._engine.backward(
                    self, tape._saved, dy_tm, dh_n, dc_n, input_grad, with_states
                )
            except BaseException:
                # A failure before backward claimed the tape (memory for the outputs, say)
                # leaves it usable; one after (Ctrl-C during the steps) leaves it spent.
                tape._consumed = bool(getattr(tape._saved, "consumed", True))
                raise
            tape._consumed = True
        tape._saved = None  # free the memory now
        dx, dh0, dc0 = out[:3]
        assert dh0 is not None
        if unbatched:  # back to one sequence's shapes
            dx = None if dx is None or not input_grad else dx[:, 0]
            dh0, dc0 = dh0[:, 0], None if dc0 is None else dc0[:, 0]
            if with_states:
                assert out[3] is not None
                dhs_one = out[3][:, :, 0]
                dcs_one = None if out[4] is None else out[4][:, :, 0]
                return dx, self._pack_state(dh0, dc0), self._pack_state(dhs_one, dcs_one)
            return dx, self._pack_state(dh0, dc0)
        dx_out = None
        if input_grad and dx is not None:
            dx_out = np.ascontiguousarray(dx.transpose(1, 0, 2)) if self.batch_first else dx
        if not with_states:
            return dx_out, self._pack_state(dh0, dc0)
        dhs, dcs = out[3], out[4]
        assert dhs is not None
        if self.batch_first:
            dhs = np.ascontiguousarray(dhs.transpose(0, 2, 1, 3))
            dcs = None if dcs is None else np.ascontiguousarray(dcs.transpose(0, 2, 1, 3))
        return dx_out, self._pack_state(dh0, dc0), self._pack_state(dhs, dcs)

    def __repr__(self) -> str:
        extra = f", nonlinearity={self.nonlinearity!r}" if hasattr(self, "nonlinearity") else ""
        if self.proj_size:
            extra += f", proj_size={self.proj_size}"
        if self.peepholes:
            extra += ", peepholes=True"
        if self.dropout:
            extra += f", dropout={self.dropout}"
        dtype = f"dtype={self.dtype.name}"
        if self.precision != "fp32":
            dtype += f", precision={self.precision!r}"
        return (
            f"{type(self).__module__}.{type(self).__name__}({self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}{extra}, bias={self.bias}, "
            f"batch_first={self.batch_first}, "
            f"bidirectional={self.bidirectional}, {dtype})"
        )


def _check_positional(args: tuple, most: int, before: int) -> None:
    if len(args) > most:
        raise TypeError(
            f"expected at most {before + most} positional arguments (torch.nn's order), got "
            f"{before + len(args)}; dtype and seed are keyword-only"
        )


class RNNBase(RecurrentBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.

    Positional arguments in torch.nn.RNN's order: input_size, hidden_size, num_layers,
    nonlinearity, bias, batch_first, dropout, bidirectional."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        _check_positional(args, 4, 4)
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)

    @property
    def cell(self) -> str:
        return f"rnn_{self.nonlinearity}"


class LSTMBase(RecurrentBase):
    """LSTM, gates i, f, g, o: c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t).

    With `proj_size` P > 0 (LSTMP, as torch.nn.LSTM): h_t = W_hr (o*tanh(c_t)), W_hr
    (`weight_hr_l{k}`) of shape (P, H); h, y and the recurrent weights' columns have width P,
    c keeps width H.

    With `peepholes=True` (as ONNX's and oneDNN's LSTM; PyTorch has none) the gates also see the
    cell: i and f add p_i*c_{t-1} and p_f*c_{t-1}, o adds p_o*c_t, with `weight_p_l{k}` =
    (p_i, p_f, p_o) of shape (3H,)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        peepholes: bool = False,
        dtype: Any = np.float32,
        seed: int | None = None,
        precision: str = "fp32",
    ) -> None:
        proj = v.check_size(proj_size, "proj_size", 0)
        hidden = v.check_size(hidden_size, "hidden_size")
        if proj >= hidden:
            raise ValueError(
                f"proj_size: expected 0 <= proj_size < hidden_size ({hidden}), got {proj}"
            )
        self.proj_size = proj
        self.peepholes = v.check_bool(peepholes, "peepholes")
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            dtype=dtype,
            seed=seed,
            precision=precision,
        )

    @property
    def cell(self) -> str:
        return "lstm"


class GRUBase(RecurrentBase):
    """GRU, gates r, z, n; `linear_before_reset=True` is PyTorch/cuDNN's variant
    n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), False the original (Cho et al. 2014)
    n = tanh(W_in x + b_in + W_hn (r*h) + b_hn); then h_t = (1-z)*n + z*h_{t-1}."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *args: Any,
        linear_before_reset: bool = True,
        **kwargs: Any,
    ) -> None:
        self.linear_before_reset = v.check_bool(linear_before_reset, "linear_before_reset")
        _check_positional(args, 4, 3)
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)

    @property
    def cell(self) -> str:
        return "gru" if self.linear_before_reset else "gru_reset_before"
