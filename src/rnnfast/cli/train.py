"""`rnnfast train TASK`: train a recurrent network on one of `rnnfast.tasks` (the tasks:
rnnfast/_task_specs.py; the run: cli/_training.py). This module is the command line: its options,
and `--resume`'s rules for what may change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import checkpoint
from .._task_specs import TASKS
from ._args import BATCH, HIDDEN, SEQ_LEN, THREADS, clip_norm, positive_float, positive_int, seed
from ._config import Config
from ._training import CELLS, INITS, KIND, OPTIMIZERS, Resumed, run

# What may change when a run is resumed (applied, and said); every other option is fixed by the
# checkpoint (the architecture, the data, the optimiser) and refused when given differently.
CHANGEABLE = ("steps", "lr", "clip", "eval_every", "precision")


def _load_resume(path: str, cfg: Config, given: dict[str, Any]) -> tuple[Config, Resumed]:
    """The checkpoint's configuration with the changeable options the user gave applied, and
    what training needs to continue exactly where it stopped."""
    arrays, meta = checkpoint.load(path)
    if "vocab" in meta.get("config", {}) or meta.get("kind") == "rnnfast charrnn":
        raise checkpoint.CheckpointError(
            f"{path}: a checkpoint of rnnfast charrnn; resume it with `rnnfast charrnn train "
            "--resume`"
        )
    saved = checkpoint.config_from(
        meta, Config, path, KIND, optional=("losses", "flow", "precision")
    )
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
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help=f"the recurrent layer's products (default {d.precision}; bf16: see rnnfast.LSTM)",
    )
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
OPTIONS = (*OPTIONS, "init", "seed", "eval_every", "precision")


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


__all__ = ["add_arguments", "main"]
