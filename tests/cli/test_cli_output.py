"""What a person sees: progress that fits an 80-column terminal, help that gives defaults, a run
directory for the run's files, plots of every step."""

from __future__ import annotations

import argparse
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

from rnnfast import checkpoint
from rnnfast.cli import Parser, main
from rnnfast.cli._progress import Progress, fit_words


def _in_terminal(argv: list[str], columns: int = 80, timeout: float = 60.0) -> str:
    """Runs `python -m rnnfast ARGV` with stderr and stdout on a pseudo-terminal of `columns`."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnfast", *argv],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                raise TimeoutError("no output")
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
    finally:
        proc.wait(timeout=timeout)
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_stays_on_one_line_of_an_80_column_terminal(tmp_path):
    out = _in_terminal(
        [
            "train",
            "adding",
            "--steps",
            "400",
            "--seq-len",
            "20",
            "--hidden",
            "8",
            "--eval-every",
            "200",
            "--run-dir",
            str(tmp_path),
        ]
    )
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
    bar_lines = [seg for line in plain.split("\n") for seg in line.split("\r") if "%" in seg]
    assert len(bar_lines) >= 2
    assert all(len(seg) <= 79 for seg in bar_lines), max(bar_lines, key=len)
    assert "ETA" in plain or "<" in plain  # rnnfast's bar or tqdm's
    assert "nan" not in plain  # no metric is shown before the first evaluation
    assert "\r" in out  # rewritten in place, not scrolled


def test_progress_bar_fits_and_fills_by_time():
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    p = Progress(10**9, seconds=1e-9, stream=stream, use_tqdm=False)
    p.update(0)
    p.update(5, "loss 1.0")
    assert "100%" in stream.getvalue()  # the time budget is spent: the bar is full
    quiet = io.StringIO()
    q = Progress(10, quiet=True, stream=quiet)
    q.update(0)
    q.update(10, "x")
    q.close()
    assert quiet.getvalue() == ""


def test_not_a_terminal_gets_plain_lines(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "adding",
                "--steps",
                "30",
                "--seq-len",
                "10",
                "--hidden",
                "4",
                "--eval-every",
                "30",
                "--run-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "\r" not in err and "100% 30/30" in err


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [(f"{name} {n}", a) for n, a in _options(sub)]
        elif not isinstance(action, argparse._HelpAction):
            out.append((action.dest, action))
    return out


def test_every_option_has_help_and_defaults_are_shown(capsys):
    from rnnfast import cli

    captured = {}

    def grab(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    original = Parser.parse_args
    Parser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            cli._run(["bench"], [])
    finally:
        Parser.parse_args = original
    options = _options(captured["parser"])
    assert len(options) > 40
    missing = [name for name, a in options if not a.help]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["charrnn", "train", "--help"])
    text = capsys.readouterr().out
    assert "(default: 500)" in text and "(default: charrnn.npz)" in text


def test_train_writes_into_its_run_directory_and_plots_every_step(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    argv = ["train", "adding", "--steps", "30", "--seq-len", "10", "--hidden", "4"]
    assert main([*argv, "--eval-every", "10", "--plot", "loss.png", "--gradflow", "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "adding-lstm"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz", "loss.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # nothing in the current directory
    _, meta = checkpoint.load(run_dir / "checkpoint.npz")
    cfg = meta["config"]
    assert len(cfg["losses"]) == 30 and len(cfg["history"]) == 3
    flow = np.array(cfg["flow"])
    assert flow.shape == (3, 5) and np.all(flow[:, 1:4] >= 0) and np.all(flow[:, 4] <= 1)
    assert main([*argv, "--run-dir", str(tmp_path / "elsewhere"), "--quiet"]) == 0
    assert (tmp_path / "elsewhere" / "checkpoint.npz").exists()


def test_a_time_bounded_run_counts_time_not_a_billion_steps():
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    p = Progress(10**9, seconds=600, stream=stream, use_tqdm=False)
    p.update(0)
    time.sleep(0.05)  # 5387 steps in 0.05 s: 10^9 would take hours, so 600 s ends the run
    p.update(5387, "loss 1.234 nats/char")
    shown = stream.getvalue()
    assert "/10:00 step 5387" in shown and "1000000000" not in shown


@pytest.mark.parametrize("room", range(0, 60, 3))
def test_text_is_cut_between_parts_never_inside_a_figure(room):
    text = "loss 1.2345 nats/char, 12,345 chars/s"
    cut = fit_words(text, room)
    assert len(cut) <= room
    assert text.startswith(cut)
    assert cut in ("", text) or text[len(cut)] in ", "  # the cut falls between words


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_tqdm_bar_leaves_room_so_tqdm_never_cuts_a_figure(columns, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    p = Progress(10**6, stream=stream)
    assert p.bar is not None
    p.update(0)
    text = "loss 1.234567 nats/char, 123,456 chars/s, clipped 12% of steps"
    p.update(12345, text)
    p.close()
    lines = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stream.getvalue()).replace("\r", "\n")
    last = [ln for ln in lines.split("\n") if "12345/" in ln][-1]
    assert len(last) <= columns
    times = last.rsplit("[", 1)[-1].rstrip().rstrip("]")  # "00:00<00:01, <text>"
    shown = times.split(", ", 1)[1] if ", " in times else ""
    assert text.startswith(shown), last
    assert shown == text or text[len(shown)] in ", ", last  # cut between words
