"""The configuration of a `rnnfast train` run, as its checkpoint keeps it, with the curves the
run records."""

from __future__ import annotations

from dataclasses import dataclass, field

# Distances T - k at which --gradflow records ||dE_T/dh_k|| (fractions of T).
FLOW_POINTS = (0.1, 0.5, 1.0)


@dataclass
class Config:
    task: str
    cell: str = "lstm"
    hidden: int = 64
    steps: int = 1000
    seq_len: int = 100
    batch: int = 32
    lr: float = 1e-3
    optim: str = "adam"
    clip: float = 1.0
    init: str = "default"
    seed: int = 0
    eval_every: int = 100
    eval_batch: int = 512
    precision: str = "fp32"  # the recurrent layer's products: fp32 or bf16
    history: list[list[float]] = field(default_factory=list)  # [step, train loss, metric]
    losses: list[float] = field(default_factory=list)  # every step's training loss
    # --gradflow: [step, ||dE_T/dh_k|| at each FLOW_POINTS distance..., clipped fraction]
    flow: list[list[float]] = field(default_factory=list)


__all__ = ["FLOW_POINTS", "Config"]
