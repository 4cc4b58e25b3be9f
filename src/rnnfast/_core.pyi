"""Type stub for rnnfast._core, the C++ extension (one direction of one layer per call)."""

import numpy as np
import numpy.typing as npt

__version__: str
CELL_RNN_TANH: int
CELL_RNN_RELU: int
CELL_LSTM: int
CELL_GRU: int
CELL_GRU_RESET_BEFORE: int

_Arr = npt.NDArray[np.floating]
_Tape = tuple[_Arr, _Arr, _Arr | None, _Arr | None]

def layer_forward(
    cell: int,
    reverse: bool,
    x: _Arr,
    w_ih: _Arr,
    w_hh: _Arr,
    b_ih: _Arr | None,
    b_hh: _Arr | None,
    h0: _Arr,
    c0: _Arr | None,
    lengths: npt.NDArray[np.int64] | None,
    y: _Arr,
    y_offset: int,
    training: bool,
) -> tuple[_Arr, _Arr | None, _Tape | None]: ...
def layer_backward(
    cell: int,
    reverse: bool,
    x: _Arr,
    w_ih: _Arr,
    w_hh: _Arr,
    lengths: npt.NDArray[np.int64] | None,
    tape: _Tape,
    dy: _Arr | None,
    dy_offset: int,
    dh_n: _Arr | None,
    dc_n: _Arr | None,
    dx: _Arr | None,
    accumulate_dx: bool,
    dw_ih: _Arr,
    dw_hh: _Arr,
    db_ih: _Arr | None,
    db_hh: _Arr | None,
) -> tuple[_Arr, _Arr | None]: ...

MAX_THREADS: int

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def usable_threads() -> int: ...
def have_openmp() -> bool: ...
def isa() -> str: ...
def supported_isas() -> list[str]: ...
def compiler() -> str: ...
def activation(name: str, x: _Arr) -> _Arr: ...
def recurrence_plan(cell: int, batch: int, hidden: int, float32: bool) -> tuple[int, str]: ...
def matmul(a: _Arr, b: _Arr, transpose_b: bool = False) -> _Arr: ...
def optimizer_update(
    kind: str, param: _Arr, grad: _Arr, states: list[_Arr], hyper: dict[str, float | bool | int]
) -> None: ...
