"""The command line: rnnfast train (checkpoints, resume, every task) and its errors."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from rnnfast import checkpoint
from rnnfast.cli import main


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
        ("adding", "lstm", ["--seq-len", "10", "--precision", "bf16"]),
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
    assert meta["config"]["precision"] == ("bf16" if "bf16" in args else "fp32")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "sorting"], "argument task: invalid choice: 'sorting'"),
        (["train", "adding", "--hidden", "0"], "argument --hidden: expected a whole number >= 1"),
        (["train", "adding", "--lr", "-1"], "argument --lr: expected a positive number"),
        (["train", "adding", "--cell", "tcn"], "argument --cell: invalid choice: 'tcn'"),
        (["train", "adding", "--seq-len", "1"], "--seq-len: expected at least 2"),
        (["bench", "--sizes", "10x0x5"], "expected TxBxH with integers in [1, 100000]"),
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


def make_text(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 60
    path = tmp_path / "fox.txt"
    path.write_text(text)
    return path


def test_charrnn_trains_samples_and_resumes(tmp_path, capsys):
    corpus, ckpt = make_text(tmp_path), tmp_path / "c.npz"
    args = [
        "charrnn",
        "train",
        str(corpus),
        "--hidden",
        "32",
        "--batch",
        "4",
        "--seq-len",
        "16",
        "--eval-every",
        "25",
        "--lr",
        "0.01",
        "--checkpoint",
        str(ckpt),
    ]
    assert main([*args, "--steps", "50"]) == 0
    _, meta = checkpoint.load(ckpt)
    history = meta["config"]["history"]
    assert history[-1][2] < history[0][2]  # validation nats/char fall
    assert main([*args, "--steps", "60", "--resume"]) == 0
    capsys.readouterr()
    assert (
        main(["charrnn", "sample", str(ckpt), "--length", "30", "--prime", "the ", "--seed", "3"])
        == 0
    )
    out = capsys.readouterr().out.rstrip("\n")
    assert out.startswith("the ") and len(out) == 34 and set(out) <= set(corpus.read_text())


def _charrnn_args(corpus, ckpt, *extra):
    return [
        "charrnn",
        "train",
        str(corpus),
        *("--hidden", "32", "--batch", "4", "--seq-len", "16", "--lr", "0.01"),
        *("--eval-every", "40", "--quiet", "--checkpoint", str(ckpt), *extra),
    ]


def test_charrnn_in_bf16_learns_as_far_as_in_float32(tmp_path, capsys):
    """The same 80 steps in each precision, from the same parameters and data: bf16 products
    (rnnfast.LSTM(precision="bf16")) end within 5% of float32's validation loss, both far below
    where they started; the checkpoint records the precision and samples from it."""
    corpus = make_text(tmp_path)
    final = {}
    for precision in ("fp32", "bf16"):
        ckpt = tmp_path / f"{precision}.npz"
        assert main(_charrnn_args(corpus, ckpt, "--steps", "80", "--precision", precision)) == 0
        _, meta = checkpoint.load(ckpt)
        assert meta["config"]["precision"] == precision
        history = meta["config"]["history"]
        assert [h[1] for h in history] == [40, 80]  # the last evaluation recorded once
        assert history[-1][2] < 0.6 * history[0][2], history
        final[precision] = history[-1][2]
    assert abs(final["bf16"] - final["fp32"]) <= 0.05 * final["fp32"], final
    capsys.readouterr()
    assert main(["charrnn", "sample", str(tmp_path / "bf16.npz"), "--length", "20"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == 20


def test_charrnn_resume_may_change_the_precision(tmp_path, capsys):
    corpus, ckpt = make_text(tmp_path), tmp_path / "c.npz"
    assert main(_charrnn_args(corpus, ckpt, "--steps", "3")) == 0
    assert main(_charrnn_args(corpus, ckpt, "--steps", "6", "--resume", "--precision", "bf16")) == 0
    assert "--resume: precision bf16 (the checkpoint had fp32)" in capsys.readouterr().err
    _, meta = checkpoint.load(ckpt)
    assert meta["step"] == 6 and meta["config"]["precision"] == "bf16"


def test_charrnn_checkpoints_from_before_precision_load_as_float32(tmp_path, capsys):
    corpus, ckpt = make_text(tmp_path), tmp_path / "c.npz"
    assert main(_charrnn_args(corpus, ckpt, "--steps", "2")) == 0
    arrays, meta = checkpoint.load(ckpt)
    del meta["config"]["precision"]
    checkpoint.save(ckpt, arrays, meta)
    assert main(_charrnn_args(corpus, ckpt, "--steps", "4", "--resume")) == 0
    _, meta = checkpoint.load(ckpt)
    assert meta["config"]["precision"] == "fp32"
    meta["config"]["precision"] = "int8"
    checkpoint.save(ckpt, arrays, meta)
    capsys.readouterr()
    assert main(["charrnn", "sample", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "damaged checkpoint (precision)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_charrnn_signal_saves_the_last_step_and_exits_cleanly(
    tmp_path, capsys, monkeypatch, sig, code
):
    from rnnfast.cli import charrnn

    calls = {"n": 0}
    real = charrnn.CharModel.train_step

    def signalled(self, x, y, state):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), sig)  # arrives in the middle of step 7
        return real(self, x, y, state)

    monkeypatch.setattr(charrnn.CharModel, "train_step", signalled)
    ckpt = tmp_path / "c.npz"
    argv = ["charrnn", "train", str(make_text(tmp_path)), "--hidden", "16", "--batch", "2"]
    assert main([*argv, "--seq-len", "8", "--checkpoint", str(ckpt)]) == code
    assert "checkpoint saved" in capsys.readouterr().err
    _, meta = checkpoint.load(ckpt)
    assert meta["step"] == 7  # the step in flight was finished, then saved


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), (b"", "the file is empty"), (b"\xff\xfe\xfa", "not UTF-8 text")],
)
def test_charrnn_bad_corpus_files_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    assert main(["charrnn", "train", str(path), "--checkpoint", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_charrnn_sample_errors_are_one_line(tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    assert (
        main(
            [
                "charrnn",
                "train",
                str(make_text(tmp_path)),
                "--hidden",
                "8",
                "--batch",
                "2",
                "--seq-len",
                "8",
                "--steps",
                "2",
                "--checkpoint",
                str(ckpt),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["charrnn", "sample", str(ckpt), "--prime", "QZ"]) == 2
    assert "characters not in the model's vocabulary" in capsys.readouterr().err
    (tmp_path / "other.npz").write_bytes(b"junk")
    assert main(["charrnn", "sample", str(tmp_path / "other.npz")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_default_corpus_is_real_deterministic_text():
    from rnnfast.cli import charrnn

    a, b = charrnn.default_corpus(200_000), charrnn.default_corpus(200_000)
    assert a == b and len(a) == 200_000 and "def " in a and "import" in a


def test_charrnn_sample_reads_trains_default_checkpoint(tmp_path, capsys, monkeypatch):
    """`rnnfast charrnn train` then `rnnfast charrnn sample`, both without a path: sample reads
    the checkpoint train wrote by default."""
    monkeypatch.chdir(tmp_path)
    corpus = make_text(tmp_path)
    small = ["--hidden", "16", "--batch", "2", "--seq-len", "8", "--steps", "3", "--quiet"]
    assert main(["charrnn", "train", str(corpus), *small]) == 0
    capsys.readouterr()
    assert main(["charrnn", "sample", "--length", "12", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == 12


def test_a_run_that_learned_nothing_says_so_against_the_tasks_baseline(tmp_path, capsys):
    """The adding problem's baseline (always 1: MSE 1/6): a 5-step run is still there, and the
    command says so rather than leaving a reader to guess from a bare figure."""
    args = ["adding", "--steps", "5", "--seq-len", "30", "--hidden", "8", "--eval-every", "5"]
    assert train(tmp_path, *args) == 0
    err = capsys.readouterr().err
    assert "has not learned the task" in err and "MSE 1/6" in err


def test_a_run_that_learned_is_not_told_it_did_not(tmp_path, capsys):
    args = ["mass-spring", "--steps", "5", "--seq-len", "10", "--hidden", "8", "--eval-every", "5"]
    assert train(tmp_path, *args) == 0  # a task without a baseline: nothing to compare
    assert "has not learned" not in capsys.readouterr().err


def test_the_plot_draws_the_adding_baseline(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from rnnfast import _task_specs

    drawn = []
    original = matplotlib.axes.Axes.axhline

    def record(self, y=0, *a, **k):
        drawn.append((y, k.get("label")))
        return original(self, y, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", record)
    args = ["adding", "--steps", "4", "--seq-len", "8", "--hidden", "4", "--eval-every", "2"]
    assert train(tmp_path, *args, "--plot", str(tmp_path / "p.png")) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn and all(y == pytest.approx(1 / 6) for y, _ in drawn)
    assert _task_specs.TASKS["adding"].baseline[1] in {label for _, label in drawn}
