"""`rnnfast gradflow`: the lecture notes' story on one picture, from a real run.

Seven recurrent layers learn the same task (the adding problem by default): a tanh RNN with
PyTorch's default initialisation (vanishing), the same with an orthogonal W_hh, the same with
W_hh of spectral radius 1.5 trained without and with gradient clipping (exploding), an IRNN
(ReLU, identity W_hh), an LSTM and a GRU. Before and after training, the gradient of the task's
loss at the last step is followed back through time: ||dE_T/dh_k|| against T - k
(rnnfast.diagnostics).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint, clip, diagnostics
from .._runtime import set_num_threads
from .._task_specs import TASKS
from ._args import BATCH, HIDDEN, SEQ_LEN, THREADS, positive_float, positive_int, seed
from ._config import Config
from ._training import OPTIMIZERS, Model, measure


@dataclass(frozen=True)
class Variant:
    """One curve: a cell, its initialisation, W_hh scaled to `radius` times (an orthogonal W_hh
    then has that spectral radius), and the gradient-norm clip (0: none)."""

    label: str
    cell: str
    init: str
    radius: float = 1.0
    clip: float = 1.0


# The notes' story, one curve each: vanishing, exploding (with and without the clipping remedy),
# and the other remedies.
MODELS = [
    Variant("tanh RNN, default init", "rnn", "default"),
    Variant("tanh RNN, orthogonal init", "rnn", "orthogonal"),
    Variant("tanh RNN, radius 1.5, no clip", "rnn", "orthogonal", radius=1.5, clip=0.0),
    Variant("tanh RNN, radius 1.5, clip 1", "rnn", "orthogonal", radius=1.5, clip=1.0),
    Variant("IRNN (ReLU, identity init)", "rnn-relu", "identity"),
    Variant("LSTM", "lstm", "default"),
    Variant("GRU", "gru", "default"),
]


@dataclass
class Curve:
    label: str
    before: diagnostics.GradientFlow
    after: diagnostics.GradientFlow
    metric: float
    seconds: float


def run_model(cfg: Config, variant: Variant, held_out: Any) -> Curve:
    model = Model(cfg)
    if variant.radius != 1.0:
        with model.rnn.params.writable() as params:
            for name, p in params.items():
                if name.startswith("weight_hh"):
                    p *= variant.radius
    before = measure(model, held_out)
    opt = OPTIMIZERS[cfg.optim]([model.rnn, model.head], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        opt.zero_grad()
        model.train_step(TASKS[cfg.task].make(cfg.batch, cfg.seq_len, rng))
        if cfg.clip > 0:
            clip.clip_grad_norm([model.rnn.grads, model.head.grads], cfg.clip)
        opt.step()
    seconds = time.perf_counter() - t0
    metric = model.spec.score(model.predict(held_out)[0], held_out)
    return Curve(variant.label, before, measure(model, held_out), metric, seconds)


def plot(curves: list[Curve], cfg: Config, metric: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [3, 3, 2]})
    for ax, when in zip(axes[:2], ("before", "after")):
        for c in curves:
            flow = getattr(c, when)
            ax.semilogy(flow.distance, np.maximum(flow.norms[-1], 1e-300), label=c.label)
        ax.set_xlabel("T - k: steps back from the loss at the last step")
        ax.set_ylabel("||dE_T / dh_k|| (mean over sequences)")
        ax.set_title("at initialisation" if when == "before" else f"after {cfg.steps} steps")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    values = np.array([c.metric for c in curves], dtype=float)
    shown = np.where(np.isfinite(values), values, np.nan)  # a diverged run has no bar
    axes[2].bar(range(len(curves)), shown, color="tab:gray")
    for i, v in enumerate(values):
        if not np.isfinite(v):
            axes[2].annotate("diverged", (i, 0), xycoords=("data", "axes fraction"), ha="center")
    axes[2].set_xticks(range(len(curves)), [c.label for c in curves], fontsize=7, rotation=30)
    for tick in axes[2].get_xticklabels():
        tick.set_horizontalalignment("right")
    axes[2].set_ylabel(f"held-out {metric} after training")
    if metric == "mse":  # errors from 1e-4 to 0.2 side by side: only a log axis shows both
        axes[2].set_yscale("log")
    baseline = TASKS[cfg.task].baseline
    if baseline is not None:
        axes[2].axhline(baseline[0], color="tab:red", linewidth=0.8, label=baseline[1])
        axes[2].legend(fontsize=8)
    fig.suptitle(
        f"Gradient flow through time: {cfg.task} task, T={cfg.seq_len}, hidden {cfg.hidden}, "
        f"{cfg.optim} lr {cfg.lr}, gradient norm clipped to 1 unless said"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary(curves: list[Curve], metric: str) -> str:
    lines = [
        f"{'model':<30} {'gain/step':>9} {'->':>2} {'trained':>8} {'|dE/dh| at T-1 vs 0':>20} "
        f"{'rho(W_hh)':>9} {'|J|':>6} {metric:>14} {'s':>5}"
    ]
    for c in curves:
        b, a = c.before, c.after
        ratio = a.norms[-1][-1] / a.norms[-1][0] if a.norms[-1][0] > 0 else float("nan")
        spec = a.layers[-1]
        jac = f"{spec.jacobian_norm:6.2f}" if spec.jacobian_norm is not None else f"{'-':>6}"
        lines.append(
            f"{c.label:<30} {b.gain[-1]:9.3f} {'':>2} {a.gain[-1]:8.3f} {ratio:20.2e} "
            f"{max(spec.spectral_radius):9.3f} {jac} {c.metric:14.4f} {c.seconds:5.1f}"
        )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Long enough for the gated cells to learn the adding problem (about 2 minutes on 2 cores
    # for the seven models).
    d = Config(task="adding", steps=2000, seq_len=50, lr=3e-3)
    p.add_argument("--task", choices=sorted(TASKS), default="adding", help="the task learned")
    p.add_argument("--seq-len", type=SEQ_LEN, default=d.seq_len, help="T (or the copy delay)")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="training steps a model")
    p.add_argument("--hidden", type=HIDDEN, default=d.hidden, help="hidden units")
    p.add_argument("--batch", type=BATCH, default=d.batch, help="sequences a step")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam's learning rate")
    p.add_argument("--seed", type=seed, default=d.seed, help="parameters and data")
    p.add_argument("--threads", type=THREADS, help="rnnfast threads (default: all)")
    p.add_argument("--out", default="gradflow.png", help="the figure (needs matplotlib)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "gradflow draws a figure: it needs matplotlib (pip install matplotlib)"
        ) from None
    checkpoint.check_writable(args.out, "the figure")
    if args.json:
        checkpoint.check_writable(args.json, "the JSON output")
    if args.seq_len < 2:
        raise ValueError("--seq-len: expected at least 2")
    if args.threads is not None:
        set_num_threads(args.threads)
    held_out = TASKS[args.task].make(64, args.seq_len, np.random.default_rng(10**6 + args.seed))
    curves = []
    for variant in MODELS:
        cfg = Config(
            task=args.task,
            cell=variant.cell,
            init=variant.init,
            clip=variant.clip,
            hidden=args.hidden,
            steps=args.steps,
            seq_len=args.seq_len,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
        )
        curves.append(run_model(cfg, variant, held_out))
    metric = TASKS[args.task].metric
    print(summary(curves, metric))
    plot(curves, cfg, metric, args.out)
    print(f"rnnfast gradflow: wrote {args.out}")
    if args.json:
        data = [
            {
                "model": c.label,
                "radius_scale": variant.radius,
                "clip": variant.clip,
                "spectral_radius_before": c.before.layers[-1].spectral_radius,
                "gain_before": float(c.before.gain[-1]),
                "gain_after": float(c.after.gain[-1]),
                "norms_before": c.before.norms[-1].tolist(),
                "norms_after": c.after.norms[-1].tolist(),
                "spectral_radius": c.after.layers[-1].spectral_radius,
                "jacobian_norm": c.after.layers[-1].jacobian_norm,
                metric: c.metric,
                "seconds": c.seconds,
            }
            for c, variant in zip(curves, MODELS)
        ]
        Path(args.json).write_text(json.dumps(data, indent=1))
    return 0
