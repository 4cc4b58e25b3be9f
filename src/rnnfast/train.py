"""`rnnfast train TASK`: train a recurrent network on one of `rnnfast.tasks`.

The model is one recurrent layer (`--cell rnn|rnn-relu|lstm|gru`) and a Linear head; every
step draws a fresh batch, runs forward and backward, clips the gradient norm and takes an
optimiser step. Evaluation uses a fixed held-out set generated from another seed. Checkpoints
(parameters, optimiser state, configuration, step, the batch generator's state) are written
atomically, so `--resume` continues exactly where the run stopped.

Tasks: `adding` (T = --seq-len; output at the last step, MSE), `copy` (delay = --seq-len, 10
symbols; cross-entropy at every step, accuracy on the copied symbols), `reber` (embedded Reber
grammar; every possible next symbol, binary cross-entropy; a string is right when every step's
prediction, sigmoid > 0.5, is exactly the set of possible symbols), `mass-spring` (T = --seq-len;
position at every step, MSE).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, clip, diagnostics, init, nn, optim, tasks
from ._args import BATCH, HIDDEN, SEQ_LEN, THREADS, clip_norm, positive_float, positive_int, seed
from ._cells import BY_CLI
from ._fast import CLI_CELLS
from ._interrupt import StopOnSignal
from ._memory import check_fits, recurrent_model_bytes, sequence_bytes
from ._runtime import set_num_threads
from .progress import Progress

# The command line's cells (rnnfast._cells): gates, and the class with its keywords.
GATES = {cli: kind.gates for cli, kind in BY_CLI.items()}
CELLS = CLI_CELLS
OPTIMIZER_STATES = {"sgd": 1, "adagrad": 1, "rmsprop": 3, "adam": 2, "adamw": 2}
OPTIMIZERS = {
    "sgd": optim.SGD,
    "adagrad": optim.Adagrad,
    "rmsprop": optim.RMSprop,
    "adam": optim.Adam,
    "adamw": optim.AdamW,
}
INITS = ("default", "orthogonal", "identity", "xavier")


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
    history: list[list[float]] = field(default_factory=list)  # [step, train loss, metric]
    losses: list[float] = field(default_factory=list)  # every step's training loss
    # --gradflow: [step, ||dE_T/dh_k|| at each FLOW_POINTS distance..., clipped fraction]
    flow: list[list[float]] = field(default_factory=list)


class Model:
    """A recurrent layer and a Linear head with the training step of a task."""

    def __init__(self, cfg: Config) -> None:
        spec = TASKS[cfg.task]
        cls, kw = CELLS[cfg.cell]
        self.spec = spec
        self.rnn = cls(spec.inputs, cfg.hidden, seed=cfg.seed, **kw)
        self.head = nn.Linear(cfg.hidden, spec.outputs, seed=cfg.seed + 1)
        schemes = {
            "orthogonal": ("xavier_uniform", "orthogonal"),
            "identity": ("small_normal", "identity"),
            "xavier": ("xavier_uniform", "xavier_uniform"),
        }
        if cfg.init in schemes:
            ih, hh = schemes[cfg.init]
            init.init_module(self.rnn, weight_ih=ih, weight_hh=hh, seed=cfg.seed)

    def predict(self, batch: Batch, training: bool = False) -> tuple[np.ndarray, Any]:
        y, _, tape = self.rnn.forward(batch.x, None, batch.lengths, training=training)
        pred, htape = self.head.forward(y[-1] if self.spec.last_only else y, training=training)
        return pred, (y, tape, htape)

    def train_step(self, batch: Batch) -> float:
        pred, (y, tape, htape) = self.predict(batch, training=True)
        loss, cache = self.spec.loss.forward(pred, batch.targets, batch.mask)
        dh = self.head.backward(htape, self.spec.loss.backward(cache))
        if self.spec.last_only:
            dy = np.zeros_like(y)
            dy[-1] = dh
        else:
            dy = dh
        self.rnn.backward(tape, dy)
        return loss


KIND = "rnnfast train"
# What may change when a run is resumed (applied, and said); every other option is fixed by the
# checkpoint (the architecture, the data, the optimiser) and refused when given differently.
CHANGEABLE = ("steps", "lr", "clip", "eval_every")


@dataclass
class Resumed:
    step: int
    smooth: float | None
    rng: dict
    arrays: dict
    optim: dict


def _load_resume(path: str, cfg: Config, given: dict[str, Any]) -> tuple[Config, Resumed]:
    """The checkpoint's configuration with the changeable options the user gave applied, and
    what training needs to continue exactly where it stopped."""
    arrays, meta = checkpoint.load(path)
    if "vocab" in meta.get("config", {}) or meta.get("kind") == "rnnfast charrnn":
        raise checkpoint.CheckpointError(
            f"{path}: a checkpoint of rnnfast charrnn; resume it with `rnnfast charrnn train "
            "--resume`"
        )
    saved = checkpoint.config_from(meta, Config, path, KIND, optional=("losses", "flow"))
    if saved.task not in TASKS or saved.cell not in CELLS or saved.optim not in OPTIMIZERS:
        raise checkpoint.CheckpointError(f"{path}: damaged checkpoint (unknown task/cell/optim)")
    for name, value in given.items():
        old = getattr(saved, name)
        if name in CHANGEABLE or value == old:
            continue
        flag = "--" + name.replace("_", "-")
        raise ValueError(
            f"{flag} {value}: the checkpoint was trained with {flag} {old}, which --resume "
            f"keeps; only {', '.join('--' + c.replace('_', '-') for c in CHANGEABLE)} can change"
        )
    step = checkpoint.field(meta, "step", int, path)
    smooth = meta.get("smooth")
    if smooth is not None and not isinstance(smooth, (int, float)):
        raise checkpoint.CheckpointError(f"{path}: damaged checkpoint ('smooth' is not a number)")
    resumed = Resumed(
        step=step,
        smooth=smooth,
        rng=checkpoint.field(meta, "rng", dict, path),
        arrays=arrays,
        optim=checkpoint.field(meta, "optim", dict, path),
    )
    if given.get("steps", saved.steps) <= step:
        raise ValueError(
            f"--steps {given.get('steps', saved.steps)}: the checkpoint has already trained "
            f"{step} steps; give a larger --steps to continue"
        )
    for name in CHANGEABLE:
        if name in given and given[name] != getattr(saved, name):
            if name != "steps":  # continuing for longer is what --resume is for
                print(
                    f"--resume: {name.replace('_', '-')} {given[name]} (the checkpoint had "
                    f"{getattr(saved, name)})",
                    file=sys.stderr,
                )
            setattr(saved, name, given[name])
    return saved, resumed


def run(
    cfg: Config,
    *,
    checkpoint_path: str,
    resume: Resumed | None = None,
    plot_path: str | None = None,
    threads: int | None = None,
    quiet: bool = False,
    gradflow: bool = False,
) -> int:
    if threads is not None:
        set_num_threads(threads)
    spec, g = TASKS[cfg.task], GATES[cfg.cell]
    need = recurrent_model_bytes(
        g, spec.inputs, cfg.hidden, 1, spec.outputs, OPTIMIZER_STATES[cfg.optim]
    )
    steps = cfg.seq_len * (3 * cfg.batch + cfg.eval_batch)  # training, plus the held-out set
    need += steps * sequence_bytes(g, spec.inputs, cfg.hidden, 1, spec.outputs)
    check_fits(need, f"a {cfg.cell} of {cfg.hidden} units on batches of {cfg.batch}")
    model = Model(cfg)
    opt = OPTIMIZERS[cfg.optim]([model.rnn, model.head], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    start, smooth = 0, None
    if resume is not None:
        checkpoint.restore(
            resume.arrays,
            {"rnn": model.rnn, "head": model.head},
            opt,
            resume.optim,
            checkpoint_path,
        )
        opt.hyper["lr"] = cfg.lr  # --lr may have changed
        try:
            rng.bit_generator.state = resume.rng
        except (TypeError, ValueError, KeyError) as exc:
            raise checkpoint.CheckpointError(
                f"{checkpoint_path}: damaged checkpoint (random state: {exc})"
            ) from None
        start, smooth = resume.step, resume.smooth
    held_out = TASKS[cfg.task].make(
        cfg.eval_batch, cfg.seq_len, np.random.default_rng(10**6 + cfg.seed)
    )
    progress = Progress(cfg.steps - start, quiet=quiet)
    t0, metric, seen = time.perf_counter(), None, 0
    clipped = steps_since = 0
    flow_batch = None
    if gradflow:
        flow_batch = TASKS[cfg.task].make(64, cfg.seq_len, np.random.default_rng(2 * 10**6))

    def save(step: int) -> None:
        arrays = {
            **checkpoint.module_arrays("rnn", model.rnn),
            **checkpoint.module_arrays("head", model.head),
            **checkpoint.optimizer_arrays(opt),
        }
        sd = opt.state_dict()
        meta = {
            "kind": KIND,
            "config": asdict(cfg),
            "step": step,
            "smooth": smooth,
            "rng": rng.bit_generator.state,
            "optim": {"type": sd["type"], "t": sd["t"], "hyper": sd["hyper"]},
        }
        checkpoint.save(checkpoint_path, arrays, meta)

    done = start
    with StopOnSignal() as stop:
        for step in range(start, cfg.steps):
            if stop.requested:
                break
            opt.zero_grad()
            batch = TASKS[cfg.task].make(cfg.batch, cfg.seq_len, rng)
            seen += batch.x.shape[0] * batch.x.shape[1]  # timesteps x sequences: tokens
            loss = model.train_step(batch)
            if cfg.clip > 0:
                norm = clip.clip_grad_norm([model.rnn.grads, model.head.grads], cfg.clip)
                clipped += bool(norm > cfg.clip)
            steps_since += 1
            opt.step()
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            cfg.losses.append(float(loss))
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.steps:
                metric = model.spec.score(model.predict(held_out)[0], held_out)
                cfg.history.append([done, float(smooth), metric])
                if flow_batch is not None:
                    cfg.flow.append([done, *_flow_norms(model, flow_batch), clipped / steps_since])
                clipped = steps_since = 0
                save(done)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            shown = f" {model.spec.metric} {metric:.4f}" if metric is not None else ""
            progress.update(
                done - start,
                f"loss {smooth:.4f}{shown} {(done - start) / elapsed:.1f} steps/s "
                f"{seen / elapsed:.0f} tokens/s",
            )
        progress.close()
        if stop.requested:
            save(done)
            print(
                f"rnnfast train: stopped at step {done}; checkpoint saved to {checkpoint_path} "
                "(continue with --resume)",
                file=sys.stderr,
            )
            return stop.exit_code
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "task": cfg.task,
                "cell": cfg.cell,
                "init": cfg.init,
                "steps": cfg.steps,
                "train_loss": smooth,
                model.spec.metric: metric,
                "seconds": round(elapsed, 2),
                "checkpoint": checkpoint_path,
            }
        )
    )
    baseline = model.spec.baseline
    if baseline is not None and metric is not None and not metric < 0.5 * baseline[0]:
        print(
            f"rnnfast train: held-out {model.spec.metric} {metric:.4f} is near or above "
            f"{baseline[0]:.4f} ({baseline[1]}): the model has not learned the task; try more "
            "--steps or a shorter --seq-len",
            file=sys.stderr,
        )
    if plot_path:
        _plot(cfg, plot_path, model.spec)
    return 0


def measure(model: Model, batch: Any) -> diagnostics.GradientFlow:
    """The flow of the task's own loss at the last step (its gradient through the head)."""
    pred, (_, _, htape) = model.predict(batch, training=True)
    spec = model.spec
    if spec.last_only:
        _, cache = spec.loss.forward(pred, batch.targets, batch.mask)
        dy_last = model.head.backward(htape, spec.loss.backward(cache))
    else:  # the loss of the last step alone
        mask = None if batch.mask is None else batch.mask[-1:]
        _, cache = spec.loss.forward(pred[-1:], batch.targets[-1:], mask)
        d_pred = np.zeros_like(pred)
        d_pred[-1:] = spec.loss.backward(cache)
        dy_last = model.head.backward(htape, d_pred)[-1]
    model.head.zero_grad()
    return diagnostics.gradient_flow(model.rnn, batch.x, dy_last)


def _flow_norms(model: Model, batch: Batch) -> list[float]:
    """||dE_T/dh_k|| of the task's loss at the last step, at the FLOW_POINTS distances."""
    norms = measure(model, batch).norms[-1]
    return [float(norms[min(int(f * len(norms)), len(norms) - 1)]) for f in FLOW_POINTS]


def smoothed(values: list[float], keep: float = 0.98) -> np.ndarray:
    """The exponential moving average min-char-rnn reports (smooth = keep*smooth + (1-keep)*x)."""
    out = np.empty(len(values))
    s = values[0] if values else 0.0
    for i, x in enumerate(values):
        s = keep * s + (1 - keep) * x
        out[i] = s
    return out


def _plot(cfg: Config, path: str, spec: TaskSpec) -> None:
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are None: an option the user did not give is told apart from one they did, so that
    # --resume can refuse changes it cannot make. Config holds the real defaults.
    d = Config(task="")
    p.add_argument("task", choices=sorted(TASKS), help="what to learn (see rnnfast.tasks)")
    p.add_argument("--cell", choices=sorted(CELLS), help=f"recurrent cell (default {d.cell})")
    p.add_argument("--hidden", type=HIDDEN, help=f"hidden units (default {d.hidden})")
    p.add_argument("--steps", type=positive_int, help=f"training steps (default {d.steps})")
    p.add_argument(
        "--seq-len",
        type=SEQ_LEN,
        help=f"T (adding, mass-spring) or the copy delay (default {d.seq_len})",
    )
    p.add_argument("--batch", type=BATCH, help=f"sequences a step (default {d.batch})")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (default {d.lr})")
    p.add_argument("--optim", choices=sorted(OPTIMIZERS), help=f"optimiser (default {d.optim})")
    p.add_argument(
        "--clip", type=clip_norm, help=f"max gradient norm, 0 for none (default {d.clip})"
    )
    p.add_argument("--init", choices=INITS, help=f"initialisation of W_hh (default {d.init})")
    p.add_argument("--seed", type=seed, help=f"parameters and data (default {d.seed})")
    p.add_argument("--threads", type=THREADS, help="rnnfast threads (default: all cores)")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        help=f"steps between evaluations (default {d.eval_every})",
    )
    p.add_argument(
        "--run-dir",
        help="where the run's files go: its checkpoint, and a plot named without a directory "
        "(default: runs/TASK-CELL)",
    )
    p.add_argument("--checkpoint", help="checkpoint file (default: RUN_DIR/checkpoint.npz)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if --checkpoint holds an earlier run (which is replaced)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="loss per step and smoothed, held-out metric (and --gradflow) (needs matplotlib)",
    )
    p.add_argument(
        "--gradflow",
        action="store_true",
        help="record ||dL/dh_k|| at a few distances T-k and the clipped fraction at every "
        "evaluation, and add them to --plot",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


OPTIONS: tuple[str, ...] = ("cell", "hidden", "steps", "seq_len", "batch", "lr", "optim", "clip")
OPTIONS = (*OPTIONS, "init", "seed", "eval_every")


def main(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    cfg = Config(task=args.task, **given)
    if cfg.seq_len < 2:
        raise ValueError("--seq-len: expected at least 2")
    run_dir = Path(args.run_dir or Path("runs") / f"{args.task}-{cfg.cell}")
    path = args.checkpoint or str(run_dir / "checkpoint.npz")
    plot = args.plot
    if plot and Path(plot).parent == Path():  # a bare name goes into the run directory
        plot = str(run_dir / plot)
    resumed = None
    if args.resume:
        cfg, resumed = _load_resume(path, cfg, {"task": args.task, **given})
    elif Path(path).is_file() and not getattr(args, "overwrite", False):
        # An earlier run's checkpoint is never replaced without a word.
        raise ValueError(
            f"{path}: an earlier run's checkpoint; --resume continues it, --overwrite replaces "
            "it, --run-dir or --checkpoint starts elsewhere"
        )
    checkpoint.check_writable(path)  # before training, not after it
    if plot:
        checkpoint.check_writable(plot, "the plot")
    return run(
        cfg,
        checkpoint_path=path,
        resume=resumed,
        plot_path=plot,
        threads=args.threads,
        quiet=args.quiet,
        gradflow=args.gradflow,
    )


__all__ = ["TASKS", "Config", "Model", "run"]
