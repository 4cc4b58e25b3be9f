"""`rnnfast bench`: spread in the table and the JSON, --compare, --busy, --overhead, and arguments
checked before any measuring. (No speed is asserted: timings belong to the benchmarks.)"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from rnnfast import _core, _timing
from rnnfast.cli import main

TINY = ["bench", "--no-torch", "--min-time", "0", "--rounds", "2", "--sizes", "6x2x8"]


def test_json_has_medians_spreads_and_flags(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main([*TINY, "--cells", "gru", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "+-" in table and "gru" in table
    data = json.loads(out.read_text())
    assert data["meta"]["rounds"] == 2
    rows = data["rows"]
    assert [r["mode"] for r in rows] == ["inference", "training"]
    for r in rows:
        for engine in ("rnnfast", "reference"):
            t = r[engine]
            assert t["q1_ms"] <= t["median_ms"] <= t["q3_ms"]
            assert t["min_ms"] <= t["q1_ms"] and t["q3_ms"] <= t["max_ms"]
            assert t["spread"] == pytest.approx((t["q3_ms"] - t["q1_ms"]) / t["median_ms"])
            assert t["calls"] >= 2  # one call a round at least
        assert isinstance(r["noisy"], bool) and r["max_rel_diff"] < 1e-5


def test_rows_are_shares_of_the_fma_peak(tmp_path, capsys):
    """The FMA-chain peak is measured, printed beside the GEMM peak and kept in the JSON; each
    row's % FMA is its GFLOP/s over it (a share of the hardware, not of our own GEMM)."""
    out = tmp_path / "b.json"
    assert main([*TINY, "--cells", "lstm", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "FMA peak" in text and "% FMA" in text
    data = json.loads(out.read_text())
    fma = data["meta"]["fma_peak_gflops"]
    assert math.isfinite(fma) and fma > 0
    for r in data["rows"]:
        assert r["pct_fma"] == pytest.approx(100 * r["gflops"] / fma)


def test_batch_of_one_floors_are_printed_and_kept(tmp_path, capsys):
    """The header gives what bounds a B = 1 step from below: one thread's matrix-vector product
    from L2 (GB/s) and a round trip between two threads; the JSON keeps both (the round trip as
    null when it could not be measured, never NaN, which JSON lacks), and the header says why."""
    out = tmp_path / "b.json"
    assert main([*TINY, "--cells", "rnn", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "B = 1 floors: one thread reads a 256 KiB matrix from L2 at" in printed
    text = out.read_text()
    assert "NaN" not in text
    meta = json.loads(text)["meta"]
    assert math.isfinite(meta["l2_matvec_gbps"]) and meta["l2_matvec_gbps"] > 0
    trip = meta["round_trip_ns"]
    if trip is not None:
        assert 0 < trip < 1e9 and f"a round trip between two threads {trip:.0f} ns" in printed
    elif _core.usable_threads() >= 2:  # the two threads did not meet in time: said so
        assert "a round trip between two threads: not measured (a busy machine)" in printed
    else:
        assert "round trip" not in printed


def test_round_trip_is_a_figure_or_nan_and_ends_within_its_time():
    """Two usable threads: a positive figure, or NaN when a busy machine kept them apart past
    `seconds` (neither waits longer, so the call returns)."""
    v = _core.round_trip_ns(0.2)
    assert math.isnan(v) or 0 < v < 1e9, v
    if _core.usable_threads() < 2:
        assert math.isnan(v)


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf"), 61.0])
def test_floor_probes_refuse_bad_durations(seconds):
    with pytest.raises(ValueError, match=r"seconds: expected a number in \(0, 60\]"):
        _core.l2_matvec_gbps(256, seconds)
    with pytest.raises(ValueError, match=r"seconds: expected a number in \(0, 60\]"):
        _core.round_trip_ns(seconds)


@pytest.mark.parametrize("kib", [0, -5, 2**20 + 1])
def test_l2_probe_refuses_sizes_out_of_range(kib):
    with pytest.raises(ValueError, match=rf"kib: expected 1 to 1048576 \(1 GiB\), got {kib}"):
        _core.l2_matvec_gbps(kib, 0.01)


def test_round_trip_needs_a_second_thread():
    """One usable thread (set_num_threads(1), or OMP_THREAD_LIMIT=1 where OpenMP gives the team
    one thread whatever is asked) has no round trip to measure: NaN, at once, never a wait for
    a thread that does not come."""
    before = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        assert math.isnan(_core.round_trip_ns(0.01))
    finally:
        _core.set_num_threads(before)
    code = "import math, rnnfast._core as c; assert math.isnan(c.round_trip_ns(0.05)); print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_bf16_rows_carry_their_precision_and_the_fp32_ratio(tmp_path, capsys):
    """--precision bf16: rnnfast's products in bf16, float32 timed beside it (`vs fp32`), and
    the difference from the float64 reference of bf16's size, not float32's."""
    out = tmp_path / "b.json"
    assert main([*TINY, "--cells", "lstm", "--precision", "bf16", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "products in bf16" in text and "vs fp32" in text
    data = json.loads(out.read_text())
    assert data["meta"]["precision"] == "bf16"
    for r in data["rows"]:
        assert r["precision"] == "bf16" and r["vs_fp32"] > 0
        assert 1e-5 < r["max_rel_diff"] < 0.05


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf"), 61.0])
def test_fma_peak_refuses_bad_durations(seconds):
    with pytest.raises(ValueError, match=r"seconds: expected a number in \(0, 60\]"):
        _core.fma_peak(seconds)


def test_fma_peak_of_each_isa_is_a_positive_figure():
    """Every ISA this machine runs has its probes (the kernel table is complete only with them)."""
    code = (
        "import rnnfast._core as c; v = c.fma_peak(0.02); assert v > 0 and v < 1e6, v; "
        "g = c.l2_matvec_gbps(64, 0.02); assert 0 < g < 1e5, g; print('ok')"
    )
    for isa in _core.supported_isas():
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "RNNFAST_ISA": isa},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "ok" in done.stdout, isa + done.stderr


def test_compare_prints_ratios_against_an_earlier_run(tmp_path, capsys):
    old = tmp_path / "old.json"
    assert main([*TINY, "--cells", "rnn", "--json", str(old)]) == 0
    data = json.loads(old.read_text())
    # Pretend the earlier run was 1000x slower and very steady: the ratio's direction must not
    # depend on this machine's noise (2x was not enough on a loaded one).
    for r in data["rows"]:
        r["rnnfast"]["median_ms"] *= 1000
        r["rnnfast"]["spread"] = 0.0
    old.write_text(json.dumps(data))
    capsys.readouterr()
    assert main([*TINY, "--cells", "rnn,lstm", "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"against {old}" in out
    lines = [ln for ln in out.splitlines() if "->" in ln]
    assert len(lines) == 2 and all(ln.split()[0] == "rnn" for ln in lines)  # lstm: not in old
    for ln in lines:
        ratio = float(ln.split()[-2].rstrip("x"))
        assert ratio > 1.2 and ln.endswith("faster")


def test_spread_statistics():
    t = _timing.Timing([1.0, 2.0, 3.0, 4.0, 5.0])
    assert t.median == 3.0 and t.spread == pytest.approx((4.0 - 2.0) / 3.0)
    assert _timing.Timing([2.0]).spread == 0.0


def test_interleaved_rotates_and_times_every_engine():
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in "abc"}
    timings = _timing.interleaved(fns, rounds=3, min_time=0, pause=0)
    assert set(timings) == set("abc") and all(len(t.times_ms) == 3 for t in timings.values())
    # each round starts with another engine: warm-up + timed call per engine and round
    firsts = [order[i] for i in range(0, len(order), 6)]
    assert firsts == ["a", "b", "c"]


def test_busy_report(tmp_path, capsys):
    out = tmp_path / "busy.json"
    argv = ["bench", "--no-torch", "--busy", "1", "--rounds", "2", "--min-time", "0"]
    assert main([*argv, "--json", str(out)]) == 0
    assert "beside 1 CPU-bound processes" in capsys.readouterr().out
    busy = json.loads(out.read_text())["busy"]
    assert busy["neighbours"] == 1 and busy["ratio"] > 0
    assert busy["team"]["calls"] >= 2 and busy["one_thread"]["calls"] >= 2


def test_overhead_report(capsys):
    argv = ["bench", "--no-torch", "--overhead", "--rounds", "1", "--min-time", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "step() us" in out and all(cell in out for cell in ("rnn", "lstm", "gru"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-time", "nan"], "argument --min-time: expected seconds in [0, 3600]"),
        (["--min-time", "-1"], "argument --min-time: expected seconds in [0, 3600]"),
        (["--rounds", "0"], "argument --rounds: expected a whole number >= 1"),
        (["--busy", "999"], "argument --busy: expected at most 64"),
        (["--sizes", "10x1x999999999"], "expected TxBxH with integers in [1, 100000]"),
        (["--threads", "5000"], "argument --threads: expected at most 1,024"),
    ],
)
def test_bad_numbers_are_refused(extra, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", *extra])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_outputs_and_compare_file_are_checked_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    start = time.perf_counter()
    for argv, message in [
        (["--json", str(blocker / "b.json")], "cannot write an output file there"),
        (["--plot", str(tmp_path)], "is a directory"),
        (["--compare", str(tmp_path / "none.json")], "cannot read it"),
        (["--compare", str(blocker)], "not the JSON of `rnnfast bench --json`"),
    ]:
        assert main(["bench", *argv]) == 2
        assert message in capsys.readouterr().err
    assert time.perf_counter() - start < 10  # refused at once: no peak, no grid measured


@pytest.mark.skipif(not _timing._machine_busy_ticks(), reason="no /proc/stat here")
def test_rows_measured_beside_busy_processes_are_flagged(capsys):
    """Other processes' CPU time is measured around each row: neighbours that slow every round
    alike leave no spread, so this is what flags them."""
    import os
    import subprocess
    import sys

    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.3)
        with _timing.OthersCpu() as others:
            time.sleep(0.6)  # this process idles: the CPU time is the neighbours'
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert others.share is not None and others.share > _timing.BUSY_FLAG
    from rnnfast.cli.bench import Row, format_table

    row = Row(
        "gru",
        6,
        2,
        8,
        "training",
        {"median_ms": 1.0, "spread": 0.0},
        {"median_ms": 2.0},
        None,
        2.0,
        None,
        1.0,
        1.0,
        0.0,
        False,
        others.share,
    )
    assert row.busy and "! others" in format_table([row])
