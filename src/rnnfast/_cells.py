"""What each recurrent cell is, written once for the Python side: its gates, state, names on
the command line, in torch.nn, ONNX and Keras, and the gate orders of those formats. The
modules, the NumPy oracle, the commands, the benchmark and the converters read it; the C++ core
holds its own rows (src/cpp/kernels/cells/cell_list.h), and tests/api/test_package_structure.py
checks that the two agree.

Adding a cell variant here is one row; the C++ side is its recipe file and a row of cell_list.h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CellKind:
    name: str  # the core's name (rnnfast._core.Stack's `cell`)
    gate_names: tuple[str, ...]  # gate blocks of weight_ih/weight_hh rows, in rnnfast's order
    cell_state: bool  # an LSTM's c beside h
    module: str  # the class: RNN, LSTM or GRU
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor keywords that select it
    cli: str | None = None  # `rnnfast train --cell` name
    torch_mode: str | None = None  # torch.nn.RNNBase.mode (None: torch has no such cell)
    onnx_op: str = ""  # ONNX operator
    keras: str = ""  # Keras 3 layer class
    projection: bool = False  # takes proj_size and peepholes

    @property
    def gates(self) -> int:
        return len(self.gate_names)


CELLS: dict[str, CellKind] = {
    k.name: k
    for k in (
        CellKind(
            "rnn_tanh",
            ("a",),
            False,
            "RNN",
            {"nonlinearity": "tanh"},
            cli="rnn",
            torch_mode="RNN_TANH",
            onnx_op="RNN",
            keras="SimpleRNN",
        ),
        CellKind(
            "rnn_relu",
            ("a",),
            False,
            "RNN",
            {"nonlinearity": "relu"},
            cli="rnn-relu",
            torch_mode="RNN_RELU",
            onnx_op="RNN",
            keras="SimpleRNN",
        ),
        CellKind(
            "lstm",
            ("i", "f", "g", "o"),
            True,
            "LSTM",
            cli="lstm",
            torch_mode="LSTM",
            onnx_op="LSTM",
            keras="LSTM",
            projection=True,
        ),
        CellKind(
            "gru",
            ("r", "z", "n"),
            False,
            "GRU",
            {"linear_before_reset": True},
            cli="gru",
            torch_mode="GRU",
            onnx_op="GRU",
            keras="GRU",
        ),
        CellKind(
            "gru_reset_before",
            ("r", "z", "n"),
            False,
            "GRU",
            {"linear_before_reset": False},
            onnx_op="GRU",
        ),
    )
}

# The command line's names (`--cell rnn|rnn-relu|lstm|gru`).
BY_CLI: dict[str, CellKind] = {k.cli: k for k in CELLS.values() if k.cli}

# Gates of each class, ONNX operator and Keras layer (every variant of one has as many).
GATES_OF_MODULE: dict[str, int] = {k.module: k.gates for k in CELLS.values()}
GATES_OF_ONNX: dict[str, int] = {k.onnx_op: k.gates for k in CELLS.values()}
GATES_OF_KERAS: dict[str, int] = {k.keras: k.gates for k in CELLS.values() if k.keras}

# Gate orders of the formats: the format's gate blocks, as indices into rnnfast's...
# ...rnnfast's blocks as indices of ONNX's: LSTM (i, o, f, c) -> (i, f, c, o); GRU (z, r, h)
# -> (r, z, h).
ONNX_TO_RNNFAST: dict[str, list[int]] = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
# Keras keeps LSTM's (i, f, c, o); its GRU is (z, r, h): rnnfast's blocks as indices of Keras's.
KERAS_TO_RNNFAST: dict[str, list[int]] = {"SimpleRNN": [0], "LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2]}


def of_torch_mode(mode: str, linear_before_reset: bool = True) -> CellKind:
    """The cell of a torch.nn.RNNBase mode ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")."""
    if mode == "GRU" and not linear_before_reset:
        return CELLS["gru_reset_before"]
    for k in CELLS.values():
        if k.torch_mode == mode:
            return k
    raise ValueError(f"mode: expected one of LSTM, GRU, RNN_TANH, RNN_RELU, got {mode!r}")


__all__ = [
    "BY_CLI",
    "CELLS",
    "GATES_OF_KERAS",
    "GATES_OF_MODULE",
    "GATES_OF_ONNX",
    "KERAS_TO_RNNFAST",
    "ONNX_TO_RNNFAST",
    "CellKind",
    "of_torch_mode",
]
