"""Characters a second when training the same char-RNN in rnnfast and in PyTorch.

Same model and step in both: one-hot characters -> LSTM(hidden) -> Linear(vocab), mean
cross-entropy, gradient norm clipped to 5, Adam; truncated BPTT over `batch` parallel streams of
`seq_len` characters of the default corpus (the Python standard library). Each engine trains
`steps` steps after 3 warm-up steps; the medians of step times are compared.

    python benchmarks/charrnn_vs_torch.py [--hidden 256] [--batch 32] [--seq-len 64] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import rnnfast
from rnnfast import charrnn, clip, optim, tbptt


def batches(ids: np.ndarray, batch: int, seq_len: int, steps: int):
    stream_len = len(ids) // batch
    streams = ids[: stream_len * batch].reshape(batch, stream_len)
    for k in range(steps):
        pos = (k * seq_len) % (stream_len - seq_len - 1)
        yield streams[:, pos : pos + seq_len].T, streams[:, pos + 1 : pos + seq_len + 1].T


def time_rnnfast(vocab: str, data, hidden: int) -> list[float]:
    model = charrnn.CharModel(charrnn.CharConfig(vocab=vocab, hidden=hidden))
    opt = optim.Adam([model.rnn, model.head], lr=2e-3)
    state, times = None, []
    for x, y in data:
        t0 = time.perf_counter()
        opt.zero_grad()
        _, state_n = model.train_step(x, y, state)
        clip.clip_grad_norm([model.rnn.grads, model.head.grads], 5.0)
        opt.step()
        state = tbptt.carry(state_n)
        times.append(time.perf_counter() - t0)
    return times[3:]


def time_torch(vocab: str, data, hidden: int) -> list[float]:
    import torch

    torch.set_num_threads(rnnfast.get_num_threads())
    v = len(vocab)
    lstm, head = torch.nn.LSTM(v, hidden), torch.nn.Linear(hidden, v)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    eye = torch.eye(v)
    state, times = None, []
    for x, y in data:
        t0 = time.perf_counter()
        opt.zero_grad()
        out, (h, c) = lstm(eye[torch.from_numpy(x)], state)
        loss = torch.nn.functional.cross_entropy(
            head(out).reshape(-1, v), torch.from_numpy(y).reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state = (h.detach(), c.detach())
        times.append(time.perf_counter() - t0)
    return times[3:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args()
    text = charrnn.default_corpus(1_000_000)
    vocab = "".join(sorted(set(text)))
    ids = np.array([vocab.index(c) for c in text])
    chars = a.batch * a.seq_len
    rows = {}
    for name, fn in (("rnnfast", time_rnnfast), ("pytorch", time_torch)):
        time.sleep(0.3)  # let the other engine's thread pool go idle
        t = statistics.median(
            fn(vocab, list(batches(ids, a.batch, a.seq_len, a.steps + 3)), a.hidden)
        )
        rows[name] = chars / t
        print(f"{name:8s} {t * 1e3:7.2f} ms a step  {chars / t:10,.0f} characters/s")
    print(
        f"rnnfast / pytorch: {rows['rnnfast'] / rows['pytorch']:.2f}x "
        f"(LSTM {a.hidden}, vocabulary {len(vocab)}, {a.batch} streams x {a.seq_len} steps, "
        f"{rnnfast.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
