"""The training tasks as `rnnfast train` and `rnnfast gradflow` run them: each task of
`rnnfast.tasks` with its input and output sizes, batch maker, loss, held-out metric and what a
model that learned nothing scores.

Tasks: `adding` (T = seq_len; output at the last step, MSE), `copy` (delay = seq_len, 10
symbols; cross-entropy at every step, accuracy on the copied symbols), `reber` (embedded Reber
grammar; every possible next symbol, binary cross-entropy; a string is right when every step's
prediction, sigmoid > 0.5, is exactly the set of possible symbols), `mass-spring` (T = seq_len;
position at every step, MSE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import nn, tasks


@dataclass
class Batch:
    x: np.ndarray
    targets: np.ndarray
    mask: np.ndarray | None = None
    lengths: np.ndarray | None = None


@dataclass
class TaskSpec:
    inputs: int
    outputs: int
    make: Callable[[int, int, np.random.Generator], Batch]  # (batch, seq_len, rng)
    loss: Any
    last_only: bool  # the head reads only the last step
    metric: str  # what evaluate() reports
    loss_unit: str = "MSE"  # the training loss, as an axis label
    metric_unit: str = "MSE"  # the held-out metric, as an axis label
    # What a model that learned nothing scores (metric, label), drawn on the plots.
    baseline: tuple[float, str] | None = None

    def score(self, pred: np.ndarray, batch: Batch) -> float:
        """The held-out metric: MSE, or the fraction right. A diverged model's predictions (inf,
        NaN, 1e30) score inf or NaN quietly, as the losses do."""
        if self.metric == "mse":
            with np.errstate(over="ignore", invalid="ignore"):
                return float(np.mean((pred - batch.targets) ** 2))
        if self.metric == "copy accuracy":
            out = pred.argmax(-1)
            copied = batch.targets != self.outputs - 2  # positions that must emit a symbol
            return float(np.mean(out[copied] == batch.targets[copied]))
        # reber: a string is right when every real step predicts exactly the possible set
        assert batch.mask is not None  # reber batches have lengths
        right = ((pred > 0) == (batch.targets > 0.5)).all(-1) | ~batch.mask[..., 0]
        return float(np.mean(right.all(0)))


def _adding(b: int, t: int, rng: np.random.Generator) -> Batch:
    x, y = tasks.adding_problem(b, t, seed=rng)
    return Batch(x, y)


def _copy(b: int, t: int, rng: np.random.Generator) -> Batch:
    x, y = tasks.copy_task(b, length=10, delay=t, symbols=8, seed=rng)
    return Batch(x, y)


def _reber(b: int, t: int, rng: np.random.Generator) -> Batch:
    r = tasks.embedded_reber(b, seed=rng)
    mask = np.arange(r.x.shape[0])[:, None] < r.lengths[None, :]
    return Batch(r.x, r.targets, np.repeat(mask[..., None], r.x.shape[2], axis=2), r.lengths)


def _mass_spring(b: int, t: int, rng: np.random.Generator) -> Batch:
    f, y = tasks.mass_spring(b, t, seed=rng)
    return Batch(f, y)


TASKS = {
    "adding": TaskSpec(
        2, 1, _adding, nn.MSELoss(), True, "mse", baseline=(1 / 6, "always 1: MSE 1/6")
    ),
    "copy": TaskSpec(
        10,
        10,
        _copy,
        nn.CrossEntropyLoss(),
        False,
        "copy accuracy",
        "cross-entropy (nats/symbol)",
        "accuracy (fraction of copied symbols)",
    ),
    "reber": TaskSpec(
        7,
        7,
        _reber,
        nn.BCEWithLogitsLoss(),
        False,
        "strings right",
        "binary cross-entropy (nats/output)",
        "fraction of strings right",
    ),
    "mass-spring": TaskSpec(1, 1, _mass_spring, nn.MSELoss(), False, "mse"),
}


__all__ = ["TASKS", "Batch", "TaskSpec"]
