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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import GRU, LSTM, RNN, checkpoint, clip, init, nn, optim, set_num_threads, tasks
from .progress import Progress

CELLS = {
    "rnn": (RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
}
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

    def score(self, pred: np.ndarray, batch: Batch) -> float:
        """The held-out metric: MSE, or the fraction right."""
        if self.metric == "mse":
            return float(np.mean((pred - batch.targets) ** 2))
        if self.metric == "copy accuracy":
            out = pred.argmax(-1)
            copied = batch.targets != self.outputs - 2  # positions that must emit a symbol
            return float(np.mean(out[copied] == batch.targets[copied]))
        # reber: a string is right when every real step predicts exactly the possible set
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
    "adding": TaskSpec(2, 1, _adding, nn.MSELoss(), True, "mse"),
    "copy": TaskSpec(10, 10, _copy, nn.CrossEntropyLoss(), False, "copy accuracy"),
    "reber": TaskSpec(7, 7, _reber, nn.BCEWithLogitsLoss(), False, "strings right"),
    "mass-spring": TaskSpec(1, 1, _mass_spring, nn.MSELoss(), False, "mse"),
}


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


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def run(
    cfg: Config, *, checkpoint_path: str, resume: bool, plot_path: str | None, threads: int | None
) -> int:
    if threads is not None:
        set_num_threads(threads)
    model = Model(cfg)
    opt = OPTIMIZERS[cfg.optim]([model.rnn, model.head], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    start = 0
    if resume:
        arrays, meta = checkpoint.load(checkpoint_path)
        saved = Config(**meta["config"])
        for k in ("task", "cell", "hidden", "optim"):
            if getattr(saved, k) != getattr(cfg, k):
                raise ValueError(
                    f"--resume: the checkpoint has {k}={getattr(saved, k)!r}, "
                    f"not {getattr(cfg, k)!r}"
                )
        checkpoint.restore(arrays, {"rnn": model.rnn, "head": model.head}, opt, meta["optim"])
        rng.bit_generator.state = meta["rng"]
        start, cfg.history = meta["step"], saved.history
    held_out = TASKS[cfg.task].make(
        cfg.eval_batch, cfg.seq_len, np.random.default_rng(10**6 + cfg.seed)
    )
    progress = Progress(cfg.steps)
    smooth, t0, metric, seen = None, time.perf_counter(), float("nan"), 0

    def save(step: int) -> None:
        arrays = {
            **checkpoint.module_arrays("rnn", model.rnn),
            **checkpoint.module_arrays("head", model.head),
            **checkpoint.optimizer_arrays(opt),
        }
        sd = opt.state_dict()
        meta = {
            "config": asdict(cfg),
            "step": step,
            "rng": _rng_state(rng),
            "optim": {"type": sd["type"], "t": sd["t"], "hyper": sd["hyper"]},
        }
        checkpoint.save(checkpoint_path, arrays, meta)

    for step in range(start, cfg.steps):
        opt.zero_grad()
        batch = TASKS[cfg.task].make(cfg.batch, cfg.seq_len, rng)
        seen += batch.x.shape[0] * batch.x.shape[1]  # timesteps x sequences: tokens
        loss = model.train_step(batch)
        if cfg.clip > 0:
            clip.clip_grad_norm([model.rnn.grads, model.head.grads], cfg.clip)
        opt.step()
        smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            metric = model.spec.score(model.predict(held_out)[0], held_out)
            cfg.history.append([done, float(smooth), metric])
            save(done)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        progress.update(
            done,
            f"loss {smooth:.4f} {model.spec.metric} {metric:.4f} "
            f"{(done - start) / elapsed:.1f} steps/s {seen / elapsed:.0f} tokens/s",
        )
    progress.close()
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
    if plot_path:
        _plot(cfg, plot_path, model.spec.metric)
    return 0


def _plot(cfg: Config, path: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = np.array(cfg.history)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(h[:, 0], h[:, 1])
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss (smoothed)")
    ax[1].plot(h[:, 0], h[:, 2])
    ax[1].set_xlabel("step")
    ax[1].set_ylabel(f"held-out {metric}")
    fig.suptitle(f"{cfg.task}: {cfg.cell}, init {cfg.init}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def add_arguments(p: argparse.ArgumentParser, positive_int: Any, positive_float: Any) -> None:
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--hidden", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument(
        "--seq-len",
        type=positive_int,
        default=100,
        help="T (adding, mass-spring) or the copy delay",
    )
    p.add_argument("--batch", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--optim", choices=sorted(OPTIMIZERS), default="adam")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--init", choices=INITS, default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--eval-every", type=positive_int, default=100)
    p.add_argument("--checkpoint", help="checkpoint file (default: rnnfast-TASK-CELL.npz)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--plot", metavar="FILE.png", help="loss curves (needs matplotlib)")


def main(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
    if args.seq_len < 2:
        raise ValueError("--seq-len: expected at least 2")
    cfg = Config(
        task=args.task,
        cell=args.cell,
        hidden=args.hidden,
        steps=args.steps,
        seq_len=args.seq_len,
        batch=args.batch,
        lr=args.lr,
        optim=args.optim,
        clip=args.clip,
        init=args.init,
        seed=args.seed,
        eval_every=args.eval_every,
    )
    path = args.checkpoint or f"rnnfast-{args.task}-{args.cell}.npz"
    return run(
        cfg, checkpoint_path=path, resume=args.resume, plot_path=args.plot, threads=args.threads
    )


__all__ = ["TASKS", "Config", "Model", "run"]
