"""The training run of `rnnfast train` and `rnnfast gradflow`: the model (one recurrent layer
and a Linear head) and the loop.

Every step draws a fresh batch, runs forward and backward, clips the gradient norm and takes an
optimiser step. Evaluation uses a fixed held-out set generated from another seed. Checkpoints
(parameters, optimiser state, configuration, step, the batch generator's state) are written
atomically, so a resumed run continues exactly where the run stopped.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import checkpoint, clip, diagnostics, init, nn, optim
from .._cells import BY_CLI
from .._fast import CLI_CELLS
from .._runtime import set_num_threads
from .._task_specs import TASKS, Batch
from ._config import FLOW_POINTS, Config
from ._interrupt import StopOnSignal
from ._memory import check_fits, recurrent_model_bytes, sequence_bytes
from ._plots import plot_run
from ._progress import Progress

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


class Model:
    """A recurrent layer and a Linear head with the training step of a task."""

    def __init__(self, cfg: Config) -> None:
        spec = TASKS[cfg.task]
        cls, kw = CELLS[cfg.cell]
        self.spec = spec
        self.rnn = cls(spec.inputs, cfg.hidden, seed=cfg.seed, precision=cfg.precision, **kw)
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


@dataclass
class Resumed:
    step: int
    smooth: float | None
    rng: dict
    arrays: dict
    optim: dict


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
        plot_run(cfg, plot_path, model.spec)
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


__all__ = ["CELLS", "KIND", "OPTIMIZERS", "Model", "Resumed", "measure", "run"]
