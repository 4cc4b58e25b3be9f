"""`rnnfast charrnn`: a character-level language model (Karpathy's char-rnn) on rnnfast.

Training reads text (files given on the command line, or the default corpus below), holds out
its last 5% for validation, cuts the rest into B parallel streams and trains with truncated
BPTT: each step takes the next `seq_len` characters of every stream, starting from the state
the previous step ended in. Every `--eval-every` steps it reports the validation loss in nats
per character and prints a sample; checkpoints are written atomically, also on Ctrl-C.

Default corpus: real text present on every machine, the Python standard library of the running
interpreter. Its top-level modules (`<stdlib>/*.py`) are read in sorted file-name order, as
UTF-8 (undecodable bytes replaced), joined with newlines and cut at 3,000,000 characters: the
same selection for the same Python version.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint, clip, nn, optim, tbptt
from .._cells import BY_CLI
from .._fast import CLI_CELLS as CELLS
from .._runtime import set_num_threads
from ._args import (
    BATCH,
    HIDDEN,
    LAYERS,
    SEQ_LEN,
    THREADS,
    bounded_int,
    clip_norm,
    positive_float,
    positive_int,
    seed,
)
from ._interrupt import StopOnSignal
from ._memory import check_fits, recurrent_model_bytes, sequence_bytes
from ._progress import Progress

GATES = {cli: kind.gates for cli, kind in BY_CLI.items()}

DEFAULT_CORPUS_CHARS = 3_000_000


def default_corpus(limit: int = DEFAULT_CORPUS_CHARS) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text) + 1
        if total >= limit:
            break
    return "\n".join(parts)[:limit]


def read_corpus(files: Sequence[str]) -> str:
    parts = []
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name}: not UTF-8 text") from None
        except OSError as exc:
            raise ValueError(f"{name}: cannot read it ({exc.strerror or exc})") from None
        if not text:
            raise ValueError(f"{name}: the file is empty")
        parts.append(text)
    return "\n".join(parts)


@dataclass
class CharConfig:
    vocab: str
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    seq_len: int = 64
    batch: int = 32
    lr: float = 2e-3
    clip: float = 5.0
    seed: int = 0
    precision: str = "fp32"  # the recurrent layer's products: fp32 or bf16 (rnnfast.LSTM)
    history: list[list[float]] = field(default_factory=list)  # [seconds, step, val nats/char]


class CharModel:
    def __init__(self, cfg: CharConfig) -> None:
        cls, kw = CELLS[cfg.cell]
        v = len(cfg.vocab)
        self.cfg = cfg
        codes = np.frombuffer(cfg.vocab.encode("utf-32-le", "surrogatepass"), np.uint32)
        self._order = np.argsort(codes, kind="stable")  # sorted position -> vocabulary index
        self._codes = codes[self._order]
        self.rnn = cls(v, cfg.hidden, cfg.layers, seed=cfg.seed, precision=cfg.precision, **kw)
        self.head = nn.Linear(cfg.hidden, v, seed=cfg.seed + 1)
        self.loss = nn.CrossEntropyLoss()

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """Character indices (int32): code points looked up in the sorted vocabulary at once,
        4 bytes a character where a Python list would take ten times that."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        idx = np.searchsorted(self._codes, codes)
        known = (idx < len(self._codes)) & (
            self._codes[np.minimum(idx, len(self._codes) - 1)] == codes
        )
        if not known.all():
            missing = sorted({chr(c) for c in codes[~known][:1000]})
            raise ValueError(f"{what}: characters not in the model's vocabulary: {missing[:10]!r}")
        return self._order[idx].astype(np.int32)

    def train_step(self, x: np.ndarray, y: np.ndarray, state: Any) -> tuple[float, Any]:
        """One truncated-BPTT chunk: x, y (T, B) character indices. Returns loss, final state."""
        # Characters go in as indices (one-hot rows never built: a copy of W_ih's columns).
        out, state_n, tape = self.rnn.forward(x, state, one_hot=True)
        logits, htape = self.head.forward(out)
        assert tape is not None and htape is not None  # training forwards
        loss, cache = self.loss.forward(logits, y)
        dout = self.head.backward(htape, self.loss.backward(cache))
        self.rnn.backward(tape, dout, input_grad=False)  # one-hot characters need no gradient
        return loss, state_n

    def nats_per_char(self, ids: np.ndarray, chunk: int = 1000) -> float:
        """Mean cross-entropy over a text read as one stream, state carried between chunks."""
        state, total = None, 0.0
        for start, stop in tbptt.chunks(len(ids) - 1, chunk):
            out, state = self.rnn(ids[start:stop, None], state, one_hot=True)
            loss, _ = nn.CrossEntropyLoss(reduction="sum").forward(
                self.head(out), ids[start + 1 : stop + 1, None]
            )
            total += loss
        return total / max(len(ids) - 1, 1)

    def sample(
        self, length: int, temperature: float = 1.0, prime: str = "", seed: int | None = None
    ) -> str:
        rng = np.random.default_rng(seed)
        ids = (
            self.encode(prime, "prime") if prime else np.array([rng.integers(len(self.cfg.vocab))])
        )
        out, state = self.rnn(ids[:, None], one_hot=True)  # the prime as one sequence
        stepping: Any = state  # (then a StepState, carried by step)
        logits = self.head(out[-1, 0])
        chars = []
        for _ in range(length):
            z = (logits - logits.max()) / temperature
            p = np.exp(z.astype(np.float64))
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            chars.append(self.cfg.vocab[nxt])
            # One character a step, the state carried in place (rnnfast's step(): nothing is
            # allocated; the reference engine's modules step the same way).
            y, stepping = self.rnn.step(np.array([nxt]), stepping, one_hot=True)
            logits = self.head(y[0])
        return prime + "".join(chars)


KIND = "rnnfast charrnn"
# What --resume may change (applied, and said); the rest is fixed by the checkpoint.
CHANGEABLE = ("lr", "clip", "precision")
FIXED = ("cell", "hidden", "layers", "seq_len", "batch", "seed")


def _state_arrays(state: Any) -> dict[str, np.ndarray]:
    if state is None:
        return {}
    if isinstance(state, tuple):
        return {"state.h": state[0], "state.c": state[1]}
    return {"state.h": state}


def _save(
    path: str, model: CharModel, opt: optim.Optimizer, step: int, pos: int, state: Any
) -> None:
    sd = opt.state_dict()
    arrays = {
        **checkpoint.module_arrays("rnn", model.rnn),
        **checkpoint.module_arrays("head", model.head),
        **checkpoint.optimizer_arrays(opt),
        **_state_arrays(state),  # the carried state: a resumed run continues bit for bit
    }
    meta = {
        "kind": KIND,
        "config": asdict(model.cfg),
        "step": step,
        "pos": pos,
        "optim": {"type": sd["type"], "t": sd["t"], "hyper": sd["hyper"]},
    }
    checkpoint.save(path, arrays, meta)


def load_model(path: str) -> tuple[CharModel, dict[str, np.ndarray], dict[str, Any]]:
    arrays, meta = checkpoint.load(path)
    if meta.get("kind") not in (None, KIND) or "vocab" not in meta.get("config", {}):
        raise checkpoint.CheckpointError(
            f"{path}: not a checkpoint of rnnfast charrnn (rnnfast train's? it resumes with "
            "`rnnfast train TASK --resume`)"
        )
    # (checkpoints from before --precision have none: float32)
    cfg = checkpoint.config_from(meta, CharConfig, path, KIND, optional=("precision",))
    if not cfg.vocab or len(set(cfg.vocab)) != len(cfg.vocab) or cfg.cell not in CELLS:
        raise checkpoint.CheckpointError(f"{path}: damaged checkpoint (vocabulary or cell)")
    if cfg.precision not in ("fp32", "bf16"):
        raise checkpoint.CheckpointError(f"{path}: damaged checkpoint (precision)")
    for name in ("hidden", "layers", "seq_len", "batch"):
        if getattr(cfg, name) < 1:
            raise checkpoint.CheckpointError(f"{path}: damaged checkpoint ({name} < 1)")
    model = CharModel(cfg)
    try:
        model.rnn.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("rnn.")})
        model.head.load_state_dict({k[5:]: v for k, v in arrays.items() if k.startswith("head.")})
    except (KeyError, ValueError, TypeError) as exc:
        raise checkpoint.CheckpointError(f"{path}: does not fit its own model ({exc})") from None
    return model, arrays, meta


def _saved_state(arrays: dict[str, np.ndarray], model: CharModel, path: str) -> Any:
    if "state.h" not in arrays:
        return None
    h = arrays["state.h"]
    state = (h, arrays.get("state.c")) if model.rnn._has_cell_state else h
    try:
        model.rnn._check_state(state, model.cfg.batch, "state")
    except (TypeError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{path}: damaged checkpoint ({exc})") from None
    return state


def _check_corpus_fits(files: Sequence[str]) -> None:
    """A corpus costs about 16 bytes a byte of text at its peak (the text, its UTF-32 code
    points, the indices); refuse one that cannot fit before reading it."""
    total = 0
    for name in files:
        try:
            total += Path(name).stat().st_size
        except OSError as exc:
            raise ValueError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    check_fits(16 * total, f"a corpus of {total / 2**30:.2f} GiB of text")


def train(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in (*FIXED, *CHANGEABLE) if getattr(args, k) is not None}
    if args.files:
        _check_corpus_fits(args.files)
    checkpoint.check_writable(args.checkpoint)
    if args.threads is not None:
        set_num_threads(args.threads)
    if args.resume:
        model, arrays, meta = load_model(args.checkpoint)
        cfg = model.cfg
        for name, value in given.items():
            if name in FIXED and value != getattr(cfg, name):
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"{flag} {value}: the checkpoint was trained with {flag} "
                    f"{getattr(cfg, name)}, which --resume keeps; only --lr, --clip, "
                    "--precision, --steps, --minutes, --eval-every and --val-chars can change"
                )
            if name in CHANGEABLE and value != getattr(cfg, name):
                print(
                    f"--resume: {name} {value} (the checkpoint had {getattr(cfg, name)})",
                    file=sys.stderr,
                )
                setattr(cfg, name, value)
        model.rnn.precision = cfg.precision
    text = read_corpus(args.files) if args.files else default_corpus()
    if len(text) < 100:
        raise ValueError(f"the corpus has {len(text)} characters; at least 100 are needed")
    if not args.resume:
        cfg = CharConfig(vocab="".join(sorted(set(text))), **given)
        g, v = GATES[cfg.cell], len(cfg.vocab)
        need = recurrent_model_bytes(g, v, cfg.hidden, cfg.layers, v, optimizer_states=2)
        need += 3 * cfg.batch * cfg.seq_len * sequence_bytes(g, v, cfg.hidden, cfg.layers, v)
        check_fits(need, f"a {cfg.cell} of {cfg.layers}x{cfg.hidden} with this batch")
        model = CharModel(cfg)
    ids = model.encode(text, "corpus")
    del text
    split = len(ids) - max(len(ids) // 20, cfg.seq_len + 2)
    train_ids, val_ids = ids[:split], ids[split : split + args.val_chars]
    stream_len = len(train_ids) // cfg.batch
    if stream_len < cfg.seq_len + 1:
        raise ValueError(
            f"the corpus is too short for {cfg.batch} streams of {cfg.seq_len + 1} "
            "characters; lower --batch or --seq-len"
        )
    streams = train_ids[: stream_len * cfg.batch].reshape(cfg.batch, stream_len)
    opt = optim.Adam([model.rnn, model.head], lr=cfg.lr)
    step, pos, state = 0, 0, None
    if args.resume:
        checkpoint.restore(
            arrays, {"rnn": model.rnn, "head": model.head}, opt, meta["optim"], args.checkpoint
        )
        opt.hyper["lr"] = cfg.lr  # --lr may have changed
        step = checkpoint.field(meta, "step", int, args.checkpoint)
        pos = checkpoint.field(meta, "pos", int, args.checkpoint)
        state = _saved_state(arrays, model, args.checkpoint)
        if step >= args.steps:
            raise ValueError(
                f"--steps {args.steps}: the checkpoint has already trained {step} steps; "
                "give a larger --steps to continue"
            )
    budget_s = args.minutes * 60 if args.minutes else float("inf")
    progress = Progress(args.steps - step, seconds=budget_s, quiet=args.quiet)
    t0, seen, first = time.perf_counter(), 0, step
    elapsed0 = cfg.history[-1][0] if cfg.history else 0.0
    print(
        f"charrnn: {len(ids):,} characters, vocabulary {len(cfg.vocab)}, {cfg.cell} "
        f"{cfg.layers}x{cfg.hidden}, {cfg.batch} streams x {cfg.seq_len} steps",
        file=sys.stderr,
    )
    with StopOnSignal() as stop:
        while step < args.steps and time.perf_counter() - t0 < budget_s and not stop.requested:
            if pos + cfg.seq_len + 1 > stream_len:
                pos, state = 0, None  # every stream starts again from its beginning
            x = streams[:, pos : pos + cfg.seq_len].T
            y = streams[:, pos + 1 : pos + cfg.seq_len + 1].T
            opt.zero_grad()
            loss, state_n = model.train_step(x, y, state)
            if cfg.clip > 0:
                clip.clip_grad_norm([model.rnn.grads, model.head.grads], cfg.clip)
            opt.step()
            state = tbptt.carry(state_n)
            pos += cfg.seq_len
            step += 1
            seen += x.size
            rate = seen / (time.perf_counter() - t0)
            progress.update(step - first, f"loss {loss:.3f} nats/char, {rate:,.0f} chars/s")
            if step % args.eval_every == 0:
                val = model.nats_per_char(val_ids)
                cfg.history.append([elapsed0 + time.perf_counter() - t0, step, val])
                progress.write(
                    f"step {step}: validation {val:.3f} nats/char ({rate:,.0f} chars/s)\n"
                    f"  sample: {model.sample(160, 0.8, seed=step)!r}"
                )
                _save(args.checkpoint, model, opt, step, pos, state)
        progress.close()
        if stop.requested:
            _save(args.checkpoint, model, opt, step, pos, state)
            print(
                f"charrnn: stopped at step {step}; checkpoint saved to {args.checkpoint} "
                "(continue with --resume)",
                file=sys.stderr,
            )
            return stop.exit_code
    if cfg.history and cfg.history[-1][1] == step:  # the loop's last evaluation was this step's
        val = cfg.history[-1][2]
    else:
        val = model.nats_per_char(val_ids)
        cfg.history.append([elapsed0 + time.perf_counter() - t0, step, val])
    elapsed = time.perf_counter() - t0
    _save(args.checkpoint, model, opt, step, pos, state)
    print(
        json.dumps(
            {
                "steps": step,
                "seconds": round(elapsed, 1),
                "validation_nats_per_char": val,
                "chars_per_second": round(seen / max(elapsed, 1e-9)),
                "checkpoint": args.checkpoint,
            }
        )
    )
    return 0


def sample(args: argparse.Namespace) -> int:
    if not (args.temperature > 0 and np.isfinite(args.temperature)):
        raise ValueError(f"--temperature: expected a positive number, got {args.temperature}")
    model, _, _ = load_model(args.checkpoint)
    print(model.sample(args.length, args.temperature, args.prime, args.seed))
    return 0


DEFAULT_CHECKPOINT = "charrnn.npz"  # where train saves and sample reads unless told


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults of the options --resume keeps are None: given or not is then known. CharConfig
    # holds the real defaults.
    d = CharConfig(vocab="")
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    t = sub.add_parser("train", help="train on FILES (default: the Python standard library)")
    t.add_argument("files", nargs="*", help="text files to learn (default: Python's stdlib)")
    t.add_argument("--cell", choices=sorted(CELLS), help=f"default {d.cell}")
    t.add_argument("--hidden", type=HIDDEN, help=f"default {d.hidden}")
    t.add_argument("--layers", type=LAYERS, help=f"default {d.layers}")
    t.add_argument("--seq-len", type=SEQ_LEN, help=f"default {d.seq_len}")
    t.add_argument("--batch", type=BATCH, help=f"default {d.batch}")
    t.add_argument("--lr", type=positive_float, help=f"default {d.lr}")
    t.add_argument("--clip", type=clip_norm, help=f"max gradient norm, 0 for none ({d.clip})")
    t.add_argument("--seed", type=seed, help=f"default {d.seed}")
    t.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help=f"the recurrent layer's products (default {d.precision}; bf16: see rnnfast.LSTM)",
    )
    t.add_argument("--steps", type=positive_int, default=10**9, help="stop after this many steps")
    t.add_argument("--minutes", type=positive_float, help="stop after this much training time")
    t.add_argument("--eval-every", type=positive_int, default=500, help="steps between evaluations")
    t.add_argument(
        "--val-chars", type=positive_int, default=20000, help="held-out characters for validation"
    )
    t.add_argument("--threads", type=THREADS, help="rnnfast threads (default: all cores)")
    t.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="where the model is saved")
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument(
        "checkpoint",
        nargs="?",
        default=DEFAULT_CHECKPOINT,
        help=f"a checkpoint written by charrnn train (default: train's, {DEFAULT_CHECKPOINT})",
    )
    s.add_argument(
        "--length", type=bounded_int(1, 10**7), default=500, help="characters to generate"
    )
    s.add_argument(
        "--temperature", type=positive_float, default=1.0, help="below 1: surer, above: wilder"
    )
    s.add_argument("--prime", default="", help="text to start from")
    s.add_argument("--seed", type=seed, help="for the sampling (default: fresh entropy)")


def main(args: argparse.Namespace) -> int:
    return train(args) if args.action == "train" else sample(args)
