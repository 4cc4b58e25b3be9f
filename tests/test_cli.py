"""The command line: rnnfast train (checkpoints, resume, every task) and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnfast import checkpoint
from rnnfast.__main__ import main


def train(tmp_path, *extra, name="run.npz"):
    return main(["train", *extra, "--checkpoint", str(tmp_path / name)])


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path, capsys):
    common = ["adding", "--seq-len", "12", "--hidden", "8", "--batch", "4", "--eval-every", "10"]
    assert train(tmp_path, *common, "--steps", "40", name="straight.npz") == 0
    assert train(tmp_path, *common, "--steps", "20", name="split.npz") == 0
    assert train(tmp_path, *common, "--steps", "40", "--resume", name="split.npz") == 0
    a, meta_a = checkpoint.load(tmp_path / "straight.npz")
    b, meta_b = checkpoint.load(tmp_path / "split.npz")
    assert meta_a["step"] == meta_b["step"] == 40
    assert set(a) == set(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == "adding" and np.isfinite(summary["mse"])


@pytest.mark.parametrize(
    ("task", "cell", "args"),
    [
        ("adding", "lstm", ["--seq-len", "10"]),
        ("copy", "gru", ["--seq-len", "5"]),
        ("reber", "lstm", []),
        ("mass-spring", "rnn", ["--seq-len", "20"]),
        ("adding", "rnn-relu", ["--seq-len", "10", "--init", "identity", "--optim", "rmsprop"]),
    ],
)
def test_every_task_trains_and_the_loss_falls(tmp_path, capsys, task, cell, args):
    assert (
        train(
            tmp_path,
            task,
            "--cell",
            cell,
            "--steps",
            "60",
            "--eval-every",
            "20",
            "--hidden",
            "24",
            "--lr",
            "0.01",
            *args,
        )
        == 0
    )
    capsys.readouterr()
    _, meta = checkpoint.load(tmp_path / "run.npz")
    losses = [h[1] for h in meta["config"]["history"]]
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "sorting"], "argument task: invalid choice: 'sorting'"),
        (["train", "adding", "--hidden", "0"], "argument --hidden: expected a whole number >= 1"),
        (["train", "adding", "--lr", "-1"], "argument --lr: expected a positive number"),
        (["train", "adding", "--cell", "tcn"], "argument --cell: invalid choice: 'tcn'"),
        (["train", "adding", "--seq-len", "1"], "--seq-len: expected at least 2"),
        (["bench", "--sizes", "10x0x5"], "expected TxBxH with positive integers"),
    ],
)
def test_bad_arguments_give_one_line_and_a_non_zero_exit(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_resume_from_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "run.npz").write_bytes(b"garbage")
    assert train(tmp_path, "adding", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable checkpoint" in err and len(err.splitlines()) == 1
    assert train(tmp_path, "adding", "--resume", name="missing.npz") == 2
    assert "missing.npz" in capsys.readouterr().err
