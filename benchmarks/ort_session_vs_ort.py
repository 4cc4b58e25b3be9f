# ruff: noqa: I001  (the import order is the point: see the comment there)
"""A word-level language model exported by torch, run by onnxruntime and by
rnnfast.onnx.InferenceSession (onnxruntime with the recurrent nodes on rnnfast), side by side.

The model is that of benchmarks/wordlm_vs_torch.py (embedding -> 2 x LSTM/GRU -> linear over the
vocabulary) in inference, exported by torch.onnx.export (the dynamo exporter by default, which
writes the weights as Slice/Concat of initializers, or the TorchScript one). Both sessions live
in one process and are timed in interleaved rounds (rnnfast._timing); outputs are compared
first. The recurrent nodes' share of onnxruntime's own run (its profiler) bounds what any
engine can give there.

    python benchmarks/ort_session_vs_ort.py [--cell lstm|gru] [--vocab 10000] [--hidden 200]
        [--seq-len 35] [--batch 1 16] [--exporter dynamo|legacy] [--rounds 6] [--seconds 8]
        [--torch-first]
"""

from __future__ import annotations

import sys

# Who loads libgomp decides how long rnnfast's idle threads spin: rnnfast loads it with
# GOMP_SPINCOUNT=30000 (src/rnnfast/_openmp.py), but torch loads its own under the same soname
# with libgomp's default (300,000), which rnnfast then shares. --torch-first measures that case.
if "--torch-first" in sys.argv:
    import torch
import rnnfast

import argparse
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import rnnfast.onnx
from rnnfast._timing import SPREAD_FLAG, interleaved


class WordModel(torch.nn.Module):
    def __init__(self, cell: str, vocab: int, hidden: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Embedding(vocab, hidden)
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](hidden, hidden, 2)
        self.decoder = torch.nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rnn(self.encoder(ids))[0])


def export(model: torch.nn.Module, ids: torch.Tensor, path: Path, exporter: str) -> None:
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(
                    model,
                    (ids,),
                    str(path),
                    dynamo=True,
                    input_names=["ids"],
                    dynamic_shapes={"ids": {1: "B"}},
                )
            else:
                torch.onnx.export(
                    model,
                    (ids,),
                    str(path),
                    dynamo=False,
                    input_names=["ids"],
                    dynamic_axes={"ids": {1: "B"}},
                )
    finally:
        logging.disable(logging.NOTSET)


def recurrent_share(path: Path, feed: dict, op: str) -> float:
    """The recurrent nodes' share of onnxruntime's run, from its profiler."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    total = sum(e["dur"] for e in nodes)
    ours = sum(e["dur"] for e in nodes if e["args"].get("op_name") == op)
    return ours / total if total else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=8.0, help="time per session and batch")
    p.add_argument(
        "--torch-first",
        action="store_true",
        help="import torch before rnnfast (libgomp's default spinning; see the imports)",
    )
    a = p.parse_args()

    torch.manual_seed(0)
    model = WordModel(a.cell, a.vocab, a.hidden).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export(model, torch.randint(0, a.vocab, (a.seq_len, 2)), path, a.exporter)
        plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ours = rnnfast.onnx.InferenceSession(str(path))
        print(
            f"{a.exporter} export of embedding -> 2 x {a.cell.upper()}({a.hidden}) -> linear, "
            f"vocabulary {a.vocab}, T={a.seq_len}; onnxruntime {ort.__version__}, "
            f"{rnnfast.get_num_threads()} rnnfast threads; rnnfast runs {len(ours.rnnfast_nodes)} "
            f"node(s){', skipped: ' + str(ours.rnnfast_skipped) if ours.rnnfast_skipped else ''}; "
            f"libgomp spinning set by: {rnnfast.show_config()['libgomp_spin']}"
        )
        print(
            f"{'batch':>5} {'onnxruntime ms':>15} {'rnnfast session ms':>19} {'ratio':>7} "
            f"{'max |diff|':>10} {'recurrent share in onnxruntime':>31}"
        )
        for batch in a.batch:
            ids = np.random.default_rng(batch).integers(0, a.vocab, (a.seq_len, batch))
            feed = {plain.get_inputs()[0].name: ids}
            diff = float(np.abs(plain.run(None, feed)[0] - ours.run(None, feed)[0]).max())
            t = interleaved(
                {
                    "ort": lambda feed=feed: plain.run(None, feed),
                    "ours": lambda feed=feed: ours.run(None, feed),
                },
                rounds=a.rounds,
                min_time=a.seconds,
            )
            share = recurrent_share(path, feed, a.cell.upper())
            noisy = "  ~" if max(t["ort"].spread, t["ours"].spread) > SPREAD_FLAG else ""
            print(
                f"{batch:5d} {t['ort'].median:15.3f} {t['ours'].median:19.3f} "
                f"{t['ort'].median / t['ours'].median:6.2f}x {diff:10.2e} "
                f"{100 * share:30.1f}%{noisy}"
            )
    print("ratio: onnxruntime's median / the rnnfast session's (above 1: rnnfast faster)")


if __name__ == "__main__":
    main()
