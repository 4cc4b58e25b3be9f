"""A word-level language model's training and inference steps in torch.nn and patched by
rnnfast.torch, with the recurrent layers' share of each step.

The model and step are those of PyTorch's word-level language-model example (examples/
word_language_model: embedding -> 2-layer LSTM or GRU -> linear decoder over the vocabulary;
cross-entropy, backward, gradient norm clipped to 0.25, SGD through `p.data.add_`, the state
carried and detached between steps), on random word ids: the data do not change the time. The
same model is timed unpatched and patched (`rnnfast.torch.patch` of a deep copy), and so are its
recurrent layers alone, in interleaved rounds (rnnfast._timing), so that a noisy machine weighs on
all alike. Most of such a step is the decoder (hidden x vocabulary per word) and the embedding's
gradient, which rnnfast does not run: the recurrent share bounds what any RNN engine can give.

The last table answers whether torch's OpenMP threads, still spinning after torch's decoder
product, slow rnnfast's next call (and the other way round): each call timed alone and right
after the other engine's.

    python benchmarks/wordlm_vs_torch.py [--cell lstm|gru] [--vocab 10000] [--hidden 200]
                                         [--batch 20] [--seq-len 35] [--rounds 6] [--seconds 24]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

import rnnfast
import rnnfast.torch as rt
from rnnfast._timing import SPREAD_FLAG, Timing, interleaved


class WordModel(torch.nn.Module):
    """embedding -> num_layers x LSTM/GRU -> linear decoder, as in PyTorch's example."""

    def __init__(self, cell: str, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Embedding(vocab, hidden)
        rnn_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn_class(hidden, hidden, layers)
        self.decoder = torch.nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        y, state = self.rnn(self.encoder(ids), state)
        return self.decoder(y), state


def _detach(state: object) -> object:
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach() if isinstance(state, torch.Tensor) else state


def train_step(model: WordModel, ids: torch.Tensor, lr: float = 20.0) -> Callable[[], None]:
    """One step of the example's training loop, the state carried between calls."""
    params = list(model.parameters())
    vocab = model.decoder.out_features
    carried: list[object] = [None]

    def step() -> None:
        model.zero_grad()
        out, state = model(ids[:-1], carried[0])
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, vocab), ids[1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.25)
        for p in params:
            p.data.add_(p.grad, alpha=-lr)
        carried[0] = _detach(state)

    return step


def infer_step(model: WordModel, ids: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model(ids[:-1], None)

    return step


def rnn_train(rnn: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> Callable[[], None]:
    """The recurrent layers alone: forward and backward with the step's shapes."""

    def step() -> None:
        rnn.zero_grad()
        y, _ = rnn(x)
        y.backward(dy)

    return step


def rnn_infer(rnn: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            rnn(x)

    return step


def _row(name: str, torch_t: Timing, ours: Timing, share: tuple[float, float] | None) -> str:
    noisy = max(torch_t.spread, ours.spread) > SPREAD_FLAG
    text = (
        f"{name:22s} {torch_t.median:9.2f} {ours.median:11.2f} {torch_t.median / ours.median:7.2f}x"
    )
    if share is not None:
        text += f"   {100 * share[0]:5.1f}%   {100 * share[1]:5.1f}%"
    return text + ("  ~" if noisy else "")


def neighbours(model: WordModel, patched: WordModel, ids: torch.Tensor, rounds: int) -> None:
    """Each engine's call alone and right after the other's (its threads may still spin)."""
    x = model.encoder(ids[:-1]).detach()
    hidden = torch.randn(x.shape[0] * x.shape[1], model.decoder.in_features)

    def ours() -> None:
        with torch.no_grad():
            patched.rnn(x)

    def decoder() -> None:
        with torch.no_grad():
            model.decoder(hidden)

    times: dict[str, list[float]] = {k: [] for k in ("a", "b", "c", "d")}
    order = (("a", None, ours), ("b", decoder, ours), ("c", None, decoder), ("d", ours, decoder))
    for _ in range(rounds * 40):
        for key, before, timed in order:
            if before:
                before()
            t0 = time.perf_counter()
            timed()
            times[key].append(1e3 * (time.perf_counter() - t0))
        time.sleep(0.002)
    t = {k: Timing(v) for k, v in times.items()}
    print("\none engine's call right after the other's (medians, ms; inference):")
    print(
        f"  rnnfast recurrent layers: alone {t['a'].median:.3f}, after torch's decoder "
        f"{t['b'].median:.3f} ({t['b'].median / t['a'].median:.2f}x)"
    )
    print(
        f"  torch's decoder:          alone {t['c'].median:.3f}, after rnnfast's call "
        f"{t['d'].median:.3f} ({t['d'].median / t['c'].median:.2f}x)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=200, help="embedding and hidden width")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    p.add_argument("--seconds", type=float, default=24.0, help="time per step kind (default 24)")
    a = p.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(rnnfast.get_num_threads())
    model = WordModel(a.cell, a.vocab, a.hidden, a.layers)
    patched = rt.patch(copy.deepcopy(model))
    ids = torch.randint(0, a.vocab, (a.seq_len + 1, a.batch))
    x = model.encoder(ids[:-1]).detach()
    dy = torch.randn(a.seq_len, a.batch, a.hidden)
    fns = {
        "torch train": train_step(model, ids),
        "rnnfast train": train_step(patched, ids),
        "torch infer": infer_step(model, ids),
        "rnnfast infer": infer_step(patched, ids),
        "torch rnn train": rnn_train(model.rnn, x, dy),
        "rnnfast rnn train": rnn_train(patched.rnn, x, dy),
        "torch rnn infer": rnn_infer(model.rnn, x),
        "rnnfast rnn infer": rnn_infer(patched.rnn, x),
    }
    t = interleaved(fns, rounds=a.rounds, min_time=a.seconds / 2)
    print(
        f"word-level LM: embedding -> {a.layers} x {a.cell.upper()}({a.hidden}) -> linear, "
        f"vocabulary {a.vocab}, {a.batch} x {a.seq_len} words, "
        f"{rnnfast.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"{'':22s} {'torch ms':>9s} {'rnnfast ms':>11s} {'ratio':>8s}   "
        f"recurrent share (torch, rnnfast)"
    )
    for kind, label in (("train", "training step"), ("infer", "inference step")):
        share = (
            t[f"torch rnn {kind}"].median / t[f"torch {kind}"].median,
            t[f"rnnfast rnn {kind}"].median / t[f"rnnfast {kind}"].median,
        )
        print(_row(label, t[f"torch {kind}"], t[f"rnnfast {kind}"], share))
        print(_row("  recurrent layers", t[f"torch rnn {kind}"], t[f"rnnfast rnn {kind}"], None))
    print("ratio: torch's median / rnnfast's; ~ marks a row whose spread exceeded the flag")
    neighbours(model, patched, ids, a.rounds)


if __name__ == "__main__":
    main()
