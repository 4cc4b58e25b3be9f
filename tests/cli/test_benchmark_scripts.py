"""The scripts in benchmarks/ run end to end on tiny sizes and print what their docstrings
promise (no speed is asserted: the timings are the scripts' own business)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_word_model_benchmark_prints_ratios_and_recurrent_shares(cell):
    pytest.importorskip("torch")
    out = _run(
        "wordlm_vs_torch.py",
        *("--cell", cell, "--vocab", "500", "--hidden", "8", "--batch", "2", "--seq-len", "3"),
        *("--seconds", "0.4", "--rounds", "1"),
    )
    assert f"{cell.upper()}(8)" in out
    for label in ("training step", "inference step"):
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        figures = re.findall(r"(\d+\.\d+)(x|%)?", line)
        ratio = [float(v) for v, unit in figures if unit == "x"]
        shares = [float(v) for v, unit in figures if unit == "%"]
        assert len(ratio) == 1 and ratio[0] > 0
        # (at these tiny sizes the layers timed alone can take longer than a noisy whole step:
        # a share is only checked to be a positive figure)
        assert len(shares) == 2 and all(s > 0 for s in shares), line
    assert "after torch's decoder" in out and "after rnnfast's call" in out


def test_onnxruntime_session_benchmark_compares_outputs_and_times_both():
    for module in ("torch", "onnxruntime", "onnxruntime_extensions", "onnxscript"):
        pytest.importorskip(module)
    out = _run(
        "ort_session_vs_ort.py",
        *("--vocab", "300", "--hidden", "200", "--seq-len", "5", "--batch", "1", "3"),
        *("--seconds", "0.3", "--rounds", "1"),
    )
    assert "rnnfast runs 2 node(s)" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "3"]
    for r in rows:
        assert float(r[4]) < 1e-4  # outputs equal onnxruntime's
        assert r[3].endswith("x") and float(r[3][:-1]) > 0


def test_cell_loop_benchmark_prints_every_row():
    pytest.importorskip("torch")
    out = _run(
        "cells_vs_torch.py",
        *("--hidden", "8", "--batch", "1", "3", "--steps", "4", "--seconds", "0.2"),
        *("--rounds", "1", "--modules"),
    )
    rows = [
        ln.split()
        for ln in out.splitlines()
        if ln.split()[:1] in (["LSTMCell"], ["GRUCell"], ["RNNCell"])
    ]
    assert len(rows) == 3 * 2 * 2  # cells x batches x (no_grad, train)
    for r in rows:
        assert r[5].endswith("x") and float(r[5][:-1]) > 0
    modules = [
        ln.split() for ln in out.splitlines() if ln.split()[:1] in (["LSTM"], ["GRU"], ["RNN"])
    ]
    assert len(modules) == 3 * 2 * 2 * 2  # modules x layers x batches x (no_grad, train)
    for r in modules:
        assert r[6].endswith("x") and float(r[6][:-1]) > 0


def test_calls_after_a_pause_benchmark_prints_every_row():
    out = _run(
        "calls_after_a_pause.py",
        *("--hidden", "8", "--steps", "2", "3", "--pauses-ms", "0", "2", "--calls", "3"),
    )
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("2", "0"), ("2", "2"), ("3", "0"), ("3", "2")]
    for r in rows:  # T, pause, rnnfast, one thread (, torch): positive figures
        assert len(r) in (4, 5) and all(float(v) > 0 for v in r[2:]), r


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_charrnn_benchmark_times_both_engines_in_either_precision(precision):
    pytest.importorskip("torch")
    out = _run(
        "charrnn_vs_torch.py",
        *("--hidden", "16", "--batch", "2", "--seq-len", "4", "--precision", precision),
        *("--seconds", "0.3", "--rounds", "1"),
    )
    for engine in ("rnnfast", "pytorch"):
        assert re.search(rf"^{engine} +\d+\.\d+ ms a step", out, re.M), out
    ratio = re.search(r"rnnfast / pytorch: (\d+\.\d+)x \(LSTM 16, .* (fp32|bf16)\)", out)
    assert ratio and float(ratio.group(1)) > 0 and ratio.group(2) == precision, out
