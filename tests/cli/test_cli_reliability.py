"""Checkpoints, user mistakes on the command line and --resume: one
clear line and a non-zero exit, never a traceback; resumed runs continue exactly."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rnnfast import checkpoint
from rnnfast.cli import main

TRAIN = ["train", "adding", "--seq-len", "6", "--hidden", "8", "--batch", "4"]


def run(argv, capsys):
    capsys.readouterr()  # this run's output only, not an earlier run's notes
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, *expected):
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]


def make_text(tmp_path):
    path = tmp_path / "fox.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    return path


# ---- 8. checkpoint files ----------------------------------------------------------------------


def _bad_files(tmp_path):
    np.savez(tmp_path / "ok.npz", a=np.ones(3))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:60])
    (tmp_path / "garbage.npz").write_bytes(b"\x00\x01hello" * 20)
    np.save(tmp_path / "array.npy", np.ones(3))

    def with_meta(name, raw):
        np.savez(tmp_path / name, __meta__=np.frombuffer(raw, np.uint8))

    with_meta("meta_int.npz", b"5")
    with_meta("meta_list.npz", b"[1, 2]")
    with_meta("meta_not_json.npz", b"{not json")
    with_meta("meta_unknown.npz", b'{"config": {"task": "adding", "bogus": 1}, "step": 1}')
    from dataclasses import asdict

    from rnnfast.cli._config import Config

    config = {**asdict(Config(task="adding")), "hidden": "eight"}
    with_meta("meta_types.npz", json.dumps({"config": config, "step": 1}).encode())
    return {
        "truncated.npz": "not a readable checkpoint",
        "garbage.npz": "not a readable checkpoint",
        "array.npy": "a single .npy array, not an rnnfast checkpoint",
        "ok.npz": "no __meta__ header",
        "meta_int.npz": "its header is a JSON int, not an object",
        "meta_list.npz": "its header is a JSON list, not an object",
        "meta_not_json.npz": "its header is not JSON",
        "meta_unknown.npz": "unknown keys ['bogus']",
        "meta_types.npz": "should be an integer",
        "missing.npz": "no such file",
    }


def test_every_malformed_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    for name, message in _bad_files(tmp_path).items():
        path = tmp_path / name
        code, _, err = run([*TRAIN, "--steps", "3", "--resume", "--checkpoint", str(path)], capsys)
        one_line_error(code, err, str(path), message)
        if not name.startswith("meta_"):  # the reader itself refuses these
            with pytest.raises(checkpoint.CheckpointError, match=message.replace(".", r"\.")):
                checkpoint.load(path)
        code, _, err = run(["charrnn", "sample", str(path)], capsys)
        one_line_error(code, err, str(path))


def test_a_checkpoint_of_the_other_command_is_named(tmp_path, capsys):
    corpus, ckpt = make_text(tmp_path), tmp_path / "c.npz"
    argv = ["charrnn", "train", str(corpus), "--hidden", "8", "--batch", "2", "--steps", "2"]
    assert main([*argv, "--seq-len", "8", "--checkpoint", str(ckpt)]) == 0
    capsys.readouterr()
    code, _, err = run([*TRAIN, "--steps", "3", "--resume", "--checkpoint", str(ckpt)], capsys)
    one_line_error(code, err, "a checkpoint of rnnfast charrnn")
    assert main([*TRAIN, "--steps", "2", "--checkpoint", str(tmp_path / "t.npz")]) == 0
    capsys.readouterr()
    code, _, err = run(["charrnn", "sample", str(tmp_path / "t.npz")], capsys)
    one_line_error(code, err, "not a checkpoint of rnnfast charrnn")


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "a.npz", {"x": np.ones(2)}, {"step": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.npz").stat().st_mode) == 0o644


def test_temporaries_of_killed_saves_are_cleaned_up(tmp_path):
    """A save killed mid-write leaves its temporary; the next save of that target removes it."""
    code = f"""
        import numpy as np, os, signal
        from rnnfast import checkpoint
        real = np.savez
        def die(f, **kw):
            real(f, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = die
        checkpoint.save({str(tmp_path / "run.npz")!r}, {{"x": np.ones(1000)}}, {{"step": 1}})
    """
    for _ in range(3):  # each save removes what earlier killed saves left
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=60)
        left = [p.name for p in tmp_path.iterdir()]
        assert len(left) == 1 and left[0].startswith(".run.npz."), left
    (tmp_path / "other.npz.tmp").write_text("not ours")
    checkpoint.save(tmp_path / "run.npz", {"x": np.ones(3)}, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz.tmp", "run.npz"]


def test_checkpoint_path_is_checked_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    started = time.perf_counter()
    for path, message in [
        (tmp_path, "is a directory"),
        (blocker / "run.npz", "cannot write a checkpoint there"),
    ]:
        code, out, err = run([*TRAIN, "--steps", "100000", "--checkpoint", str(path)], capsys)
        one_line_error(code, err, str(path), message)
        assert out == ""
    assert time.perf_counter() - started < 30  # refused at once, not after 100000 steps


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_train_saves_on_sigint_and_sigterm(tmp_path, capsys, monkeypatch, sig, code):
    from rnnfast.cli import _training as train

    calls = {"n": 0}
    real = train.Model.train_step

    def signalled(self, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), sig)
        return real(self, batch)

    monkeypatch.setattr(train.Model, "train_step", signalled)
    ckpt = tmp_path / "run.npz"
    got, _, err = run([*TRAIN, "--steps", "50", "--checkpoint", str(ckpt)], capsys)
    assert got == code and "stopped at step 5" in err
    assert checkpoint.load(ckpt)[1]["step"] == 5


# ---- 9. user mistakes on the command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threads", "99999999999"], "argument --threads: expected at most 1,024"),
        (["--hidden", "99999999"], "argument --hidden: expected at most 16,384"),
        (["--batch", "100000000000"], "argument --batch: expected at most 65,536"),
        (["--seq-len", "100000000000"], "argument --seq-len: expected at most 10,000,000"),
        (
            ["--clip", "nan"],
            "argument --clip: expected a finite number >= 0 (0 turns clipping off)",
        ),
        (["--clip", "-1"], "argument --clip: expected a finite number >= 0 (0 turns clipping off)"),
        (["--lr", "inf"], "argument --lr: expected a positive number"),
        (["--seed", "-1"], "argument --seed: expected a whole number >= 0"),
    ],
)
def test_absurd_arguments_are_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as info:
        main([*TRAIN, *extra])
    err = capsys.readouterr().err
    one_line_error(info.value.code, err, message)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "65"], "argument --layers: expected at most 64"),
        (["--threads", "0"], "argument --threads: expected a whole number >= 1"),
        (["--clip", "nan"], "(0 turns clipping off)"),
    ],
)
def test_charrnn_bounds(extra, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["charrnn", "train", str(make_text(tmp_path)), *extra])
    one_line_error(info.value.code, capsys.readouterr().err, message)


def test_a_run_that_does_not_fit_in_memory_is_one_line(capsys):
    code, _, err = run([*TRAIN, "--hidden", "16384", "--batch", "65536", "--steps", "1"], capsys)
    one_line_error(code, err, "does not fit in memory")


def _tiny_memory(needed, what):
    from rnnfast.cli import _memory

    original = _memory.available_memory
    _memory.available_memory = lambda: 1000  # bytes
    try:
        _memory.check_fits(needed, what)
    finally:
        _memory.available_memory = original


def test_a_corpus_larger_than_memory_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    from rnnfast.cli import charrnn

    corpus = make_text(tmp_path)
    monkeypatch.setattr(charrnn, "check_fits", _tiny_memory)
    code, _, err = run(["charrnn", "train", str(corpus)], capsys)
    one_line_error(code, err, "needs about", "available")


@pytest.mark.parametrize("delay", [0.1, 0.15, 0.25, 0.4])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path, delay):
    """SIGINT while the command is still importing (up to 0.15 s, where a traceback used to
    come out) or reading its corpus. (The first ~35 ms are Python's own start-up, before any
    rnnfast code runs: nothing can catch a signal there.)"""
    corpus = tmp_path / "big.txt"
    corpus.write_text("abcdefghij " * 2_000_000)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rnnfast",
            "charrnn",
            "train",
            str(corpus),
            "--checkpoint",
            str(tmp_path / "c.npz"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # 130, or killed by SIGINT (-2), which a shell reports as 130 too
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "interrupted" in err


DROPPED_INTERRUPT = """
import os, signal, sys
from rnnfast.cli import main, {module} as command

class Dying:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # Python runs the handler here, inside the finalizer
            pass

real = command.Progress
def progress(*args, **kwargs):
    Dying()  # finalized at once: its KeyboardInterrupt is unraisable, dropped by Python
    return real(*args, **kwargs)
command.Progress = progress
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize("command", ["charrnn", "train"])
def test_a_ctrl_c_python_drops_in_a_finalizer_still_stops_the_run(tmp_path, command):
    """Python runs a signal handler wherever the main thread is; inside a finalizer its
    KeyboardInterrupt is reported as unraisable and dropped, and training started as if no
    Ctrl-C had come (seen once: a run still going 60 s after a SIGINT at start-up). The training
    loop raises it again before its first step: exit 130, no traceback, no checkpoint."""
    ckpt = tmp_path / "c.npz"
    if command == "charrnn":
        argv = ["charrnn", "train", str(make_text(tmp_path)), "--checkpoint", str(ckpt)]
        argv += ["--hidden", "8", "--seq-len", "8", "--batch", "2"]
        module = "charrnn"
    else:
        argv, module = [*TRAIN, "--steps", "5", "--checkpoint", str(ckpt)], "_training"
    script = DROPPED_INTERRUPT.format(module=module, argv=argv)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, done.stderr[-2000:]
    assert "rnnfast: interrupted" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert not ckpt.exists()


# ---- 10. --resume ---------------------------------------------------------------------------


def test_resume_refuses_architecture_changes_naming_the_flag(tmp_path, capsys):
    ckpt = str(tmp_path / "run.npz")
    assert main([*TRAIN, "--steps", "4", "--checkpoint", ckpt]) == 0
    capsys.readouterr()
    code, _, err = run(
        [*TRAIN, "--steps", "8", "--resume", "--hidden", "16", "--checkpoint", ckpt], capsys
    )
    one_line_error(code, err, "--hidden 16: the checkpoint was trained with --hidden 8")
    code, _, err = run(
        [*TRAIN, "--batch", "5", "--steps", "8", "--resume", "--checkpoint", ckpt], capsys
    )
    one_line_error(code, err, "--batch 5")


def test_resume_applies_lr_and_says_so(tmp_path, capsys):
    ckpt = str(tmp_path / "run.npz")
    assert main([*TRAIN, "--steps", "4", "--checkpoint", ckpt]) == 0
    capsys.readouterr()
    code, _, err = run(
        [*TRAIN, "--steps", "8", "--resume", "--lr", "0.5", "--checkpoint", ckpt], capsys
    )
    assert code == 0 and "--resume: lr 0.5 (the checkpoint had 0.001)" in err
    _, meta = checkpoint.load(ckpt)
    assert meta["config"]["lr"] == 0.5 and meta["optim"]["hyper"]["lr"] == 0.5


def test_resume_with_steps_already_done_says_so(tmp_path, capsys):
    ckpt = str(tmp_path / "run.npz")
    assert main([*TRAIN, "--steps", "6", "--checkpoint", ckpt]) == 0
    capsys.readouterr()
    code, out, err = run([*TRAIN, "--steps", "3", "--resume", "--checkpoint", ckpt], capsys)
    one_line_error(code, err, "--steps 3: the checkpoint has already trained 6 steps")
    assert "NaN" not in out


def test_train_resume_continues_the_smoothed_loss(tmp_path, capsys):
    common = [*TRAIN, "--eval-every", "5"]
    assert main([*common, "--steps", "20", "--checkpoint", str(tmp_path / "a.npz")]) == 0
    assert main([*common, "--steps", "10", "--checkpoint", str(tmp_path / "b.npz")]) == 0
    argv = [*common, "--steps", "20", "--resume", "--checkpoint", str(tmp_path / "b.npz")]
    assert main(argv) == 0
    capsys.readouterr()
    a = checkpoint.load(tmp_path / "a.npz")[1]
    b = checkpoint.load(tmp_path / "b.npz")[1]
    assert a["smooth"] == b["smooth"]
    assert a["config"]["history"] == b["config"]["history"]


def test_charrnn_resume_is_bitwise_an_uninterrupted_run(tmp_path, capsys):
    corpus = str(make_text(tmp_path))
    common = ["charrnn", "train", corpus, "--hidden", "12", "--batch", "3", "--seq-len", "7"]
    common += ["--eval-every", "100"]
    assert main([*common, "--steps", "16", "--checkpoint", str(tmp_path / "a.npz")]) == 0
    assert main([*common, "--steps", "9", "--checkpoint", str(tmp_path / "b.npz")]) == 0
    resumed = [*common[:3], "--steps", "16", "--resume", "--checkpoint", str(tmp_path / "b.npz")]
    assert main(resumed) == 0
    capsys.readouterr()
    a, meta_a = checkpoint.load(tmp_path / "a.npz")
    b, meta_b = checkpoint.load(tmp_path / "b.npz")
    assert meta_a["step"] == meta_b["step"] == 16 and set(a) == set(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_charrnn_resume_refuses_a_different_hidden_size(tmp_path, capsys):
    corpus, ckpt = str(make_text(tmp_path)), str(tmp_path / "c.npz")
    common = ["charrnn", "train", corpus, "--batch", "2", "--seq-len", "8", "--checkpoint", ckpt]
    assert main([*common, "--hidden", "8", "--steps", "2"]) == 0
    capsys.readouterr()
    code, _, err = run([*common, "--hidden", "32", "--steps", "4", "--resume"], capsys)
    one_line_error(code, err, "--hidden 32: the checkpoint was trained with --hidden 8")


def test_bad_optimizer_header_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "run.npz"
    assert main([*TRAIN, "--steps", "3", "--checkpoint", str(ckpt)]) == 0
    arrays, meta = checkpoint.load(ckpt)
    meta["optim"]["hyper"]["lr"] = "fast"
    checkpoint.save(ckpt, arrays, meta)
    capsys.readouterr()
    code, _, err = run([*TRAIN, "--steps", "6", "--resume", "--checkpoint", str(ckpt)], capsys)
    one_line_error(code, err, str(ckpt), "hyperparameter lr='fast' is not valid")


def test_a_diverged_model_scores_quietly(tmp_path, capsys):
    """Found by the long command-line fuzz: a ReLU RNN at lr 1 on mass-spring diverged, and
    the held-out MSE of its huge predictions overflowed into a RuntimeWarning (an error under
    -W error) instead of scoring inf as the losses do."""
    from rnnfast._task_specs import TASKS

    spec = TASKS["mass-spring"]
    batch = spec.make(2, 5, np.random.default_rng(0))
    huge = np.full(batch.targets.shape, 1e30, np.float32)
    assert spec.score(huge, batch) == np.inf
    code = main(
        [
            "train",
            "mass-spring",
            "--eval-every",
            "1",
            "--cell",
            "rnn-relu",
            "--lr",
            "1",
            "--steps",
            "2",
            "--checkpoint",
            str(tmp_path / "run.npz"),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err


def test_a_new_run_never_replaces_an_earlier_runs_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "run.npz"
    first = ["train", "adding", "--hidden", "8", "--steps", "2", "--quiet", "--checkpoint"]
    assert main([*first, str(ckpt)]) == 0
    before = ckpt.read_bytes()
    code, _, err = run([*first, str(ckpt), "--seed", "5"], capsys)
    one_line_error(code, err, str(ckpt), "an earlier run's checkpoint")
    assert ckpt.read_bytes() == before
    assert main([*first, str(ckpt), "--seed", "5", "--overwrite"]) == 0
    assert ckpt.read_bytes() != before
