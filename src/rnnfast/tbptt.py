"""Truncated backpropagation through time: training on a long stream in chunks of `seq_len`.

Each chunk starts from the state the previous chunk ended in (min-char-rnn's `hprev`), so the
network sees the whole stream, but gradients stop at the chunk boundary: backward is called
without `dstate_n`, which is dL/d(final state) = 0. In NumPy nothing needs detaching; `carry`
copies the final state so the next forward can never alias it.

    state = None
    for start, stop in chunks(len(stream), seq_len):
        y, state_n, tape = rnn.forward(inputs[start:stop], state)
        loss, cache = loss_fn.forward(head(y), targets[start:stop])
        rnn.backward(tape, head_backward(loss_fn.backward(cache)))  # no dstate_n: truncated
        optimizer.step(); optimizer.zero_grad()
        state = carry(state_n)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _validate as v


def chunks(length: int, seq_len: int, *, drop_last: bool = False) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks covering [0, length); the last one may be shorter
    unless `drop_last`."""
    length = v.check_size(length, "length", minimum=0)
    seq_len = v.check_size(seq_len, "seq_len")
    for start in range(0, length, seq_len):
        stop = min(start + seq_len, length)
        if drop_last and stop - start < seq_len:
            return
        yield start, stop


def carry(state: Any) -> Any:
    """A copy of a final state (h for RNN and GRU, (h, c) for LSTM) to start the next chunk."""
    if isinstance(state, tuple):
        return tuple(np.array(s, copy=True) for s in state)
    return np.array(state, copy=True)


def reset(state: Any, rows: Sequence[int] | np.ndarray) -> Any:
    """Zeroes the state of the given batch rows in place (streams that start again)."""
    for s in state if isinstance(state, tuple) else (state,):
        s[:, rows] = 0
    return state


__all__ = ["carry", "chunks", "reset"]
