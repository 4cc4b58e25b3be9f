"""The figure of `rnnfast train --plot`: the training loss per step and smoothed, the held-out
metric, and with --gradflow the gradient norms through time and the clipped fraction."""

from __future__ import annotations

import numpy as np

from .._task_specs import TaskSpec
from ._config import FLOW_POINTS, Config


def smoothed(values: list[float], keep: float = 0.98) -> np.ndarray:
    """The exponential moving average min-char-rnn reports (smooth = keep*smooth + (1-keep)*x)."""
    out = np.empty(len(values))
    s = values[0] if values else 0.0
    for i, x in enumerate(values):
        s = keep * s + (1 - keep) * x
        out[i] = s
    return out


def plot_run(cfg: Config, path: str, spec: TaskSpec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatterSciNotation

    h = np.array(cfg.history)
    panels = 3 if cfg.flow else 2
    fig, ax = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    steps = np.arange(1, len(cfg.losses) + 1)
    ax[0].plot(steps, cfg.losses, color="tab:blue", alpha=0.25, linewidth=0.6, label="each step")
    ax[0].plot(steps, smoothed(cfg.losses), color="tab:blue", label="smoothed (0.98)")
    if spec.metric == "mse":  # the held-out metric is the loss itself: same axis
        ax[0].plot(h[:, 0], h[:, 2], "o", color="tab:red", markersize=4, label="held-out")
    ax[0].set_yscale("log")
    ax[0].yaxis.set_major_formatter(LogFormatterSciNotation())
    ax[0].set_xlabel("training step")
    ax[0].set_ylabel(f"training loss: {spec.loss_unit}")
    ax[0].legend(fontsize=8)
    ax[1].plot(h[:, 0], h[:, 2], "o-", color="tab:red")
    if spec.baseline is not None:  # what learning nothing scores: the line to get below
        for a in ax[:2]:
            a.axhline(spec.baseline[0], color="black", linestyle=":", label=spec.baseline[1])
            a.legend(fontsize=8)
    ax[1].set_xlabel("training step")
    ax[1].set_ylabel(f"held-out {spec.metric_unit}")
    if cfg.flow:
        f = np.array(cfg.flow)
        for i, frac in enumerate(FLOW_POINTS):
            label = f"T-k = {max(int(frac * cfg.seq_len), 1) if frac < 1 else cfg.seq_len - 1}"
            ax[2].semilogy(f[:, 0], np.maximum(f[:, 1 + i], 1e-300), "o-", label=label)
        ax[2].set_xlabel("training step")
        ax[2].set_ylabel("||dE_T / dh_k|| (mean over 64 sequences)")
        ax[2].legend(fontsize=8, loc="lower left")
        twin = ax[2].twinx()
        twin.plot(f[:, 0], f[:, -1], "--", color="gray")
        twin.set_ylabel("fraction of steps clipped (dashed)")
        twin.set_ylim(0, 1.05)
    fig.suptitle(f"{cfg.task}: {cfg.cell}, init {cfg.init}, T={cfg.seq_len}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["plot_run", "smoothed"]
