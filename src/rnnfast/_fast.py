"""The C++ engine: each module owns a `_core.Stack`, which runs every layer and direction in one
call per forward and one per backward and keeps the module's packed weights and memory between
calls (the parameter arrays are bound to it once)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._cells import BY_CLI
from ._recurrent import GRUBase, LSTMBase, RecurrentBase, RNNBase, StepState


class FastEngine:
    precisions = ("fp32", "bf16")

    def attach(self, module: RecurrentBase) -> None:
        stack = module._new_stack()
        stack.set_params(module._ordered(module.params._arrays))
        stack.set_grads(module._ordered(module.grads))
        module._stack = stack

    def forward(
        self,
        module: RecurrentBase,
        x: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        lengths: np.ndarray | None,
        training: bool,
        dropout: tuple[float, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
        p, key = dropout or (0.0, 0)
        return module._stack.forward(
            x, h0, c0, lengths, training, module._param_version(), p, key, module._precision
        )

    def backward(
        self,
        module: RecurrentBase,
        saved: Any,
        dy: np.ndarray | None,
        dh_n: np.ndarray | None,
        dc_n: np.ndarray | None,
        input_grad: bool = True,
        state_grads: bool = False,
    ) -> tuple[np.ndarray | None, ...]:
        version = module._param_version()
        return module._stack.backward(saved, dy, dh_n, dc_n, input_grad, state_grads, version)

    def step(self, module: RecurrentBase, x: np.ndarray, state: StepState) -> None:
        module._stack.step(x, state.h, state.c, state.y, module._param_version(), module._precision)


_FAST = FastEngine()


class RNN(RNNBase):
    __doc__ = RNNBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST


class LSTM(LSTMBase):
    __doc__ = LSTMBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST


class GRU(GRUBase):
    __doc__ = GRUBase.__doc__
    __module__ = "rnnfast"
    _engine = _FAST


# The command line's cells (`--cell rnn|rnn-relu|lstm|gru`, rnnfast._cells.BY_CLI): the class
# and the keywords that select the variant.
CLI_CELLS: dict[str, tuple[type[RecurrentBase], dict]] = {
    cli: ({"RNN": RNN, "LSTM": LSTM, "GRU": GRU}[kind.module], dict(kind.kwargs))
    for cli, kind in BY_CLI.items()
}
