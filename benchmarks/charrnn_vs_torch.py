"""Characters a second when training the same char-RNN in rnnfast and in PyTorch.

Same model and step in both: characters -> LSTM(hidden) -> Linear(vocab), mean cross-entropy,
gradient norm clipped to 5, Adam; truncated BPTT over `batch` parallel streams of `seq_len`
characters of the default corpus (the Python standard library), the state carried between steps.
PyTorch gets one-hot rows (`eye[x]`), the usual way to feed it characters; rnnfast gets the
indices (`one_hot=True`), the same numbers without building the rows. The two engines' training
steps are timed in interleaved rounds (rnnfast._timing), so that a noisy machine weighs on both
alike; medians of step times are compared.

With --precision bf16 each engine runs its own one-line bf16 switch: rnnfast's LSTM computes
its products in bf16 (rnnfast.LSTM(precision="bf16")), PyTorch runs the forward and the loss
under torch.autocast("cpu", dtype=torch.bfloat16), the recipe of its automatic mixed precision.

    python benchmarks/charrnn_vs_torch.py [--hidden 256] [--batch 32] [--seq-len 64]
                                          [--precision fp32|bf16] [--rounds 6] [--seconds 12]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterator

import numpy as np

import rnnfast
from rnnfast import clip, optim, tbptt
from rnnfast._timing import SPREAD_FLAG, interleaved
from rnnfast.cli import charrnn

Batch = tuple[np.ndarray, np.ndarray]


def batches(ids: np.ndarray, batch: int, seq_len: int) -> Iterator[Batch]:
    """(x, y) chunks of `batch` streams, (seq_len, batch) each, forever (wrapping around)."""
    stream_len = len(ids) // batch
    streams = ids[: stream_len * batch].reshape(batch, stream_len)
    for k in itertools.count():
        pos = (k * seq_len) % (stream_len - seq_len - 1)
        yield streams[:, pos : pos + seq_len].T, streams[:, pos + 1 : pos + seq_len + 1].T


def rnnfast_trainer(vocab: str, hidden: int, precision: str) -> Callable[[Batch], None]:
    model = charrnn.CharModel(charrnn.CharConfig(vocab=vocab, hidden=hidden, precision=precision))
    opt = optim.Adam([model.rnn, model.head], lr=2e-3)
    state = None

    def step(batch: Batch) -> None:
        nonlocal state
        opt.zero_grad()
        _, state_n = model.train_step(batch[0], batch[1], state)
        clip.clip_grad_norm([model.rnn.grads, model.head.grads], 5.0)
        opt.step()
        state = tbptt.carry(state_n)

    return step


def torch_trainer(vocab: str, hidden: int, precision: str) -> Callable[[Batch], None]:
    import torch

    torch.set_num_threads(rnnfast.get_num_threads())
    v = len(vocab)
    lstm, head = torch.nn.LSTM(v, hidden), torch.nn.Linear(hidden, v)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    eye = torch.eye(v)
    state = None

    def step(batch: Batch) -> None:
        nonlocal state
        x, y = torch.from_numpy(batch[0]), torch.from_numpy(batch[1])
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out, (h, c) = lstm(eye[x], state)
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, v), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state = (h.detach().float(), c.detach().float())

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    p.add_argument("--seconds", type=float, default=12.0, help="time per engine (default 12)")
    a = p.parse_args()
    text = charrnn.default_corpus(1_000_000)
    vocab = "".join(sorted(set(text)))
    ids = np.array([vocab.index(c) for c in text])
    chars = a.batch * a.seq_len
    steps = {}
    for name, make in (("rnnfast", rnnfast_trainer), ("pytorch", torch_trainer)):
        train, data = make(vocab, a.hidden, a.precision), batches(ids, a.batch, a.seq_len)
        steps[name] = lambda train=train, data=data: train(next(data))
    timings = interleaved(steps, rounds=a.rounds, min_time=a.seconds)
    for name, t in timings.items():
        flag = "  ~ noisy" if t.spread > SPREAD_FLAG else ""
        print(
            f"{name:8s} {t.median:7.2f} ms a step (spread {100 * t.spread:.0f}%, "
            f"{len(t.times_ms)} steps)  {chars / t.median * 1e3:10,.0f} characters/s{flag}"
        )
    ratio = timings["pytorch"].median / timings["rnnfast"].median
    print(
        f"rnnfast / pytorch: {ratio:.2f}x "
        f"(LSTM {a.hidden}, vocabulary {len(vocab)}, {a.batch} streams x {a.seq_len} steps, "
        f"{rnnfast.get_num_threads()} threads, {a.precision})"
    )


if __name__ == "__main__":
    main()
