"""Type stub for rnnfast._core, the C++ extension: recurrent stacks and their kernels."""

from typing import overload

import numpy as np
import numpy.typing as npt

__version__: str
MAX_THREADS: int
# A version for Stack.forward/backward: compare the parameters' values with those last packed.
VERIFY_PARAMS: int

_Arr = npt.NDArray[np.floating]

class Tape:
    @property
    def nbytes(self) -> int: ...
    @property
    def consumed(self) -> bool: ...

class DirectTape:
    """What a direct training step keeps for its backward (its gates and its weights)."""

class Stack:
    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        bias: bool,
        dtype: str,
        proj_size: int = 0,
        peepholes: bool = False,
    ) -> None: ...
    def set_params(self, arrays: list[_Arr]) -> None: ...
    def set_grads(self, arrays: list[_Arr], assign: bool = False) -> None: ...
    def forward(
        self,
        x: _Arr,
        h0: _Arr | None,
        c0: _Arr | None,
        lengths: npt.NDArray[np.int64] | None,
        training: bool,
        version: int,
        dropout: float = 0.0,
        dropout_key: int = 0,
        precision: str = "fp32",
    ) -> tuple[_Arr, _Arr, _Arr | None, Tape | None]: ...
    def step(
        self, x: _Arr, h: _Arr, c: _Arr | None, y: _Arr, version: int, precision: str = "fp32"
    ) -> None: ...
    def pooled_empty(self, n: int) -> _Arr: ...
    def direct_step(
        self, x: _Arr, h0: _Arr | None, c0: _Arr | None
    ) -> tuple[_Arr, _Arr | None]: ...
    def direct_step_at(self, batch: int, x: int, h0: int, c0: int) -> tuple[_Arr, _Arr | None]: ...
    def direct_stack_step(
        self, x: _Arr, h0: _Arr | None, c0: _Arr | None
    ) -> tuple[_Arr, _Arr | None]: ...
    def direct_train_step(
        self, x: _Arr, h0: _Arr | None, c0: _Arr | None
    ) -> tuple[_Arr, _Arr | None, DirectTape]: ...
    def direct_backward(
        self,
        x: _Arr,
        h0: _Arr | None,
        c0: _Arr | None,
        tape: DirectTape,
        dh: _Arr | None,
        dc: _Arr | None,
        input_grad: bool,
    ) -> tuple[_Arr | None, _Arr | None, _Arr | None]: ...
    def direct_gradients(
        self,
        x: _Arr,
        h0: _Arr | None,
        c0: _Arr | None,
        tape: DirectTape,
        dh: _Arr | None,
        dc: _Arr | None,
        input_grad: bool,
    ) -> tuple[_Arr | None, _Arr | None, _Arr | None, list[_Arr]]: ...
    def backward(
        self,
        tape: Tape,
        dy: _Arr | None,
        dh_n: _Arr | None,
        dc_n: _Arr | None,
        input_grad: bool,
        state_grads: bool = False,
        version: int = -1,
    ) -> tuple[_Arr | None, ...]: ...
    def tape_bytes(self, steps: int, batch: int) -> int: ...
    def cached_bytes(self) -> int: ...
    def release_memory(self) -> None: ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def usable_threads() -> int: ...
def have_openmp() -> bool: ...
def isa() -> str: ...
def supported_isas() -> list[str]: ...
def compiler() -> str: ...
def cells() -> dict[str, dict[str, object]]: ...
def fma_peak(seconds: float = 0.2) -> float: ...
def l2_matvec_gbps(kib: int = 256, seconds: float = 0.1) -> float: ...
def round_trip_ns(seconds: float = 0.1) -> float: ...
def contention_state() -> tuple[int, int]: ...
def call_runs_alone(macs: int) -> bool: ...
def set_small_calls_alone(alone: bool) -> bool: ...
def recurrence_plan(
    cell: str, steps: int, batch: int, input: int, hidden: int, dtype: str, precision: str = "fp32"
) -> tuple[int, str]: ...
def l2_cache_bytes() -> int: ...
def activation(name: str, x: _Arr) -> _Arr: ...
@overload
def matmul(
    a: _Arr, b: _Arr, transpose_a: bool = False, transpose_b: bool = False, out: None = None
) -> _Arr: ...
@overload
def matmul(
    a: _Arr, b: _Arr, transpose_a: bool = False, transpose_b: bool = False, *, out: _Arr
) -> None: ...
def softmax_cross_entropy(
    logits: _Arr, targets: npt.NDArray[np.int64], counted: npt.NDArray[np.bool_], scale: float
) -> tuple[float, _Arr]: ...
def adagrad_update(
    param: _Arr,
    grad: _Arr,
    sum: _Arr,
    lr: float,
    eps: float,
    weight_decay: float,
    eps_inside_sqrt: bool,
) -> None: ...
def rmsprop_update(
    param: _Arr,
    grad: _Arr,
    square_avg: _Arr,
    grad_avg: _Arr,
    momentum_buffer: _Arr,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None: ...
def adam_update(
    param: _Arr,
    grad: _Arr,
    exp_avg: _Arr,
    exp_avg_sq: _Arr,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
    decoupled: bool,
) -> None: ...
