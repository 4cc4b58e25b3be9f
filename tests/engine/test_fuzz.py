"""Fuzzing the engines and the command line.

Random cells, variants, shapes (0 and 1 included), dtypes, memory layouts (strided, Fortran,
read-only, nested lists, integers), lengths, NaN and inf: the C++ engine must agree with the
reference (NaN where it has NaN), never modify an input, and refuse bad input with ValueError or
TypeError. Random command lines must end with an exit status, never a traceback.

The default budget is small and derandomised (the same cases every run, CI included); with
`--fuzz-long` they run on fresh random draws: 100,000 engine cases (200,000 rnnfast calls),
100,000 bad inputs and 10,000 command lines.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import numpy as np
import pytest
from conftest import CELLS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnfast
from rnnfast import reference
from rnnfast.cli import main

LONG = 100_000


def _settings(fuzz_long: bool, quick: int, long: int = LONG) -> settings:
    return settings(
        max_examples=long if fuzz_long else quick,
        deadline=None,
        database=None,
        derandomize=not fuzz_long,
        suppress_health_check=list(HealthCheck),
    )


@st.composite
def cases(draw):
    cls, kw = draw(st.sampled_from(CELLS))
    c = {
        "cls": cls,
        "kw": kw,
        "steps": draw(st.integers(0, 7)),
        "batch": draw(st.integers(0, 5)),
        "input": draw(st.integers(1, 5)),
        "hidden": draw(st.integers(1, 9)),
        "layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "layout": draw(st.sampled_from(["c", "fortran", "strided", "readonly", "list", "int"])),
        "special": draw(st.sampled_from([None, np.nan, np.inf, -np.inf])),
        "special_in_state": draw(st.booleans()),
        "with_state": draw(st.booleans()),
        "with_lengths": draw(st.booleans()),
        "with_dy": draw(st.booleans()),
        "with_dstate": draw(st.booleans()),
        "input_grad": draw(st.booleans()),
        "threads": draw(st.sampled_from([1, 2])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }
    return c


def _layout(arr: np.ndarray, layout: str, dtype) -> object:
    if layout == "fortran":
        return np.asfortranarray(arr)
    if layout == "strided":
        wide = np.zeros((*arr.shape[:-1], 2 * arr.shape[-1]), arr.dtype)
        wide[..., ::2] = arr
        return wide[..., ::2]
    if layout == "readonly":
        ro = arr.copy()
        ro.setflags(write=False)
        return ro
    if layout == "list":  # (an empty array's shape does not survive as a list)
        return arr.tolist() if dtype == np.float64 and arr.size else arr
    if layout == "int":
        return np.round(arr).astype(np.int16)
    return arr


def _same_nan_and_close(a, b, rtol, what):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN positions")
    finite = np.isfinite(b)
    np.testing.assert_array_equal(a[~finite & ~np.isnan(b)], b[~finite & ~np.isnan(b)], what)
    if finite.any():
        scale = max(float(np.abs(b[finite]).max()), 1.0)
        err = float(np.abs(a[finite] - b[finite]).max())
        assert err <= rtol * scale, f"{what}: error {err:.3e} > {rtol:.0e} * {scale:.3e}"


def _snapshot(obj):
    if obj is None:
        return None
    if isinstance(obj, tuple):
        return tuple(np.array(o, copy=True) for o in obj)
    return np.array(obj, copy=True)


def _unchanged(before, after, what):
    if before is None:
        return
    if isinstance(before, tuple):
        for i, (b, a) in enumerate(zip(before, after)):
            _unchanged(b, a, f"{what}[{i}]")
        return
    np.testing.assert_array_equal(before, np.asarray(after), err_msg=f"{what} was modified")


def _run_case(c: dict, calls: Counter) -> None:
    rng = np.random.default_rng(c["seed"])
    dtype = c["dtype"]
    opts = dict(
        input_size=c["input"],
        hidden_size=c["hidden"],
        num_layers=c["layers"],
        bidirectional=c["bidirectional"],
        batch_first=c["batch_first"],
        bias=c["bias"],
        **c["kw"],
    )
    fast = getattr(rnnfast, c["cls"])(dtype=dtype, seed=c["seed"] % 1000, **opts)
    ref = getattr(reference, c["cls"])(dtype=np.float64, **opts)
    ref.load_state_dict(fast.state_dict())
    steps, batch = c["steps"], c["batch"]
    shape = (batch, steps, c["input"]) if c["batch_first"] else (steps, batch, c["input"])
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    if c["layout"] == "int":  # an integer array holds no NaN or inf
        x = np.round(x)
    elif c["special"] is not None and x.size:
        x.flat[rng.integers(x.size, size=max(1, x.size // 7))] = c["special"]
    d = 2 if c["bidirectional"] else 1
    s_shape = (c["layers"] * d, batch, c["hidden"])
    state = None
    if c["with_state"]:
        h0 = rng.standard_normal(s_shape).astype(dtype)
        if c["special"] is not None and c["special_in_state"] and h0.size:
            h0.flat[0] = c["special"]
        state = (h0, rng.standard_normal(s_shape).astype(dtype)) if c["cls"] == "LSTM" else h0
    lengths = None
    if c["with_lengths"] and steps > 0:
        lengths = [int(v) for v in rng.integers(1, steps + 1, size=batch)]
    y_shape = (*shape[:2], d * c["hidden"])
    dy = rng.standard_normal(y_shape).astype(dtype) if c["with_dy"] else None
    dstate = None
    if c["with_dstate"]:
        dh = rng.standard_normal(s_shape).astype(dtype)
        dstate = (dh, rng.standard_normal(s_shape).astype(dtype)) if c["cls"] == "LSTM" else dh
    x_in = _layout(x, c["layout"], dtype)
    before = {"x": _snapshot(x_in if not isinstance(x_in, list) else None), "state": None}
    before["state"], before["dy"], before["dstate"] = (
        _snapshot(state),
        _snapshot(dy),
        _snapshot(dstate),
    )

    rnnfast.set_num_threads(c["threads"])
    y, s_n, tape = fast.forward(x_in, state, lengths)
    dx, ds0 = fast.backward(tape, dy, dstate, input_grad=c["input_grad"])
    calls["fast"] += 2
    for name in ("x", "state", "dy", "dstate"):
        current = {"x": x_in, "state": state, "dy": dy, "dstate": dstate}[name]
        _unchanged(before[name], current, name)

    x64 = x.astype(np.float64)

    def to64(s):
        if s is None:
            return None
        if isinstance(s, tuple):
            return tuple(np.asarray(p, np.float64) for p in s)
        return np.asarray(s, np.float64)

    yr, s_r, tape_r = ref.forward(x64, to64(state), lengths)
    dxr, ds0r = ref.backward(tape_r, to64(dy), to64(dstate), input_grad=c["input_grad"])
    calls["reference"] += 2
    rtol = 1e-9 if dtype == np.float64 else 5e-4
    _same_nan_and_close(y, yr, rtol, "y")
    for a, b in zip(
        np.atleast_1d(s_n) if not isinstance(s_n, tuple) else s_n,
        np.atleast_1d(s_r) if not isinstance(s_r, tuple) else s_r,
    ):
        _same_nan_and_close(a, b, rtol, "state_n")
    if c["input_grad"]:
        _same_nan_and_close(dx, dxr, rtol, "dx")
    else:
        assert dx is None and dxr is None
    for a, b in zip(
        ds0 if isinstance(ds0, tuple) else (ds0,), ds0r if isinstance(ds0r, tuple) else (ds0r,)
    ):
        _same_nan_and_close(a, b, rtol, "dstate0")
    for k in ref.grads:
        _same_nan_and_close(fast.grads[k], ref.grads[k], rtol, f"grads[{k}]")


def test_fuzz_engines_against_the_reference(fuzz_long, threads):
    calls: Counter = Counter()

    @_settings(fuzz_long, quick=120)
    @given(case=cases())
    def check(case):
        _run_case(case, calls)

    check()
    print(f"engine fuzz: {calls['fast']} rnnfast calls, {calls['reference']} reference calls")
    assert calls["fast"] > 0


BAD_KINDS = [
    "x_ndim",
    "x_size",
    "x_complex",
    "x_object",
    "x_str",
    "state_shape",
    "state_pair",
    "lengths_range",
    "lengths_count",
    "lengths_float",
    "dy_shape",
    "tape_twice",
    "tape_other",
    "dtype_other",
]


@st.composite
def bad_cases(draw, kind):
    cls, kw = draw(st.sampled_from(CELLS))
    return {
        "cls": cls,
        "kw": kw,
        "kind": kind,
        "steps": draw(st.integers(1, 5)),
        "batch": draw(st.integers(1, 4)),
        "layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
    }


def _bad_call(c: dict) -> None:
    dtype = c["dtype"]
    m = getattr(rnnfast, c["cls"])(
        3, 4, c["layers"], bidirectional=c["bidirectional"], dtype=dtype, seed=0, **c["kw"]
    )
    steps, batch, kind = c["steps"], c["batch"], c["kind"]
    x = np.ones((steps, batch, 3), dtype)
    d = 2 if c["bidirectional"] else 1
    good_state = np.zeros((c["layers"] * d, batch, 4), dtype)
    if kind == "x_ndim":
        m(x[0, 0])  # 1-D (2-D is one sequence)
    elif kind == "x_size":
        m(np.ones((steps, batch, 5), dtype))
    elif kind == "x_complex":
        m(x.astype(np.complex64))
    elif kind == "x_object":
        m(np.full((steps, batch, 3), object()))
    elif kind == "x_str":
        m("hello")
    elif kind == "state_shape":
        m(x, (good_state[:, :0], good_state) if c["cls"] == "LSTM" else good_state[:, :0])
    elif kind == "state_pair":
        m(x, good_state if c["cls"] == "LSTM" else (good_state, good_state))
    elif kind == "lengths_range":
        m(x, lengths=[steps + 1] * batch)
    elif kind == "lengths_count":
        m(x, lengths=[1] * (batch + 1))
    elif kind == "lengths_float":
        m(x, lengths=[1.0] * batch)
    elif kind == "dy_shape":
        _, _, tape = m.forward(x)
        m.backward(tape, np.ones((steps, batch, 1), dtype))
    elif kind == "tape_twice":
        _, _, tape = m.forward(x)
        m.backward(tape)
        m.backward(tape)
    elif kind == "tape_other":
        _, _, tape = m.forward(x)
        getattr(rnnfast, c["cls"])(3, 4, c["layers"], dtype=dtype, **c["kw"]).backward(tape)
    elif kind == "dtype_other":
        m(x.astype(np.float64 if dtype == np.float32 else np.float32))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_fuzz_bad_input_is_always_a_clear_error(fuzz_long, kind):
    @_settings(fuzz_long, quick=6, long=LONG // len(BAD_KINDS))
    @given(case=bad_cases(kind))
    def check(case):
        with pytest.raises((ValueError, TypeError)) as info:
            _bad_call(case)
        assert str(info.value), case

    check()


# ---- the command line -----------------------------------------------------------------------

NUMBERS = ["0", "1", "2", "-1", "3.5", "nan", "inf", "-inf", "1e309", "99999999999", "", "x", "٣"]
OPTIONS = {
    "train": {
        "--hidden": ["4", "8", *NUMBERS],
        "--steps": ["1", "2", "0", "-1", "nan", "x"],
        "--seq-len": ["2", "3", *NUMBERS],
        "--batch": ["1", "3", *NUMBERS],
        "--lr": ["0.01", *NUMBERS],
        "--clip": ["0", "1", *NUMBERS],
        "--threads": ["1", "2", *NUMBERS],
        "--seed": ["0", "5", *NUMBERS],
        "--eval-every": ["1", "2", *NUMBERS],
        "--cell": ["lstm", "gru", "rnn", "rnn-relu", "tcn", ""],
        "--optim": ["adam", "sgd", "adagrad", "rmsprop", "adamw", "lbfgs"],
        "--init": ["default", "orthogonal", "identity", "xavier", "he"],
    },
    "charrnn": {
        "--hidden": ["4", "8", *NUMBERS],
        "--layers": ["1", "2", *NUMBERS],
        "--steps": ["1", "2", "0", "x"],
        "--seq-len": ["4", "8", *NUMBERS],
        "--batch": ["1", "2", *NUMBERS],
        "--lr": ["0.01", *NUMBERS],
        "--clip": ["0", "5", *NUMBERS],
        "--threads": ["1", "2", *NUMBERS],
        "--eval-every": ["1", "2", *NUMBERS],
        "--val-chars": ["50", *NUMBERS],
        "--cell": ["lstm", "gru", "rnn", "tcn"],
    },
}


@st.composite
def command_lines(draw, tmp):
    command = draw(st.sampled_from(["train", "charrnn", "sample", "bench"]))
    files = {
        "corpus": str(tmp / "corpus.txt"),
        "missing": str(tmp / "missing.txt"),
        "dir": str(tmp),
        "garbage": str(tmp / "garbage.npz"),
        "empty": str(tmp / "empty.txt"),
    }
    ckpt = draw(st.sampled_from([str(tmp / "run.npz"), files["garbage"], files["dir"]]))
    if command == "bench":
        argv = ["bench", "--no-torch", "--min-time", draw(st.sampled_from(["0", "0.001", "x"]))]
        argv += ["--sizes", draw(st.sampled_from(["2x1x3", "3x2x4", "0x1x1", "1x", "x", ""]))]
        argv += ["--cells", draw(st.sampled_from(["lstm", "gru,rnn", "tcn", ""]))]
        return argv
    if command == "sample":
        argv = ["charrnn", "sample", draw(st.sampled_from([ckpt, files["missing"]]))]
        argv += ["--length", draw(st.sampled_from(["5", *NUMBERS]))]
        argv += ["--temperature", draw(st.sampled_from(["0.5", *NUMBERS]))]
        return argv
    opts = OPTIONS[command]
    chosen = draw(st.lists(st.sampled_from(sorted(opts)), max_size=5, unique=True))
    argv = ["train", draw(st.sampled_from(["adding", "copy", "reber", "mass-spring", "sort"]))]
    if command == "charrnn":
        corpus = draw(st.sampled_from(["corpus", "corpus", "missing", "dir", "empty", "garbage"]))
        argv = ["charrnn", "train", files[corpus]]
    for name in chosen:
        argv += [name, draw(st.sampled_from(opts[name]))]
    # Keep valid runs tiny: sizes beyond these are drawn only as values that must be refused.
    argv += ["--checkpoint", ckpt]
    if draw(st.booleans()):
        argv.append("--resume")
    return argv


def _cli_is_clean(argv: list[str]) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    assert isinstance(code, int), (argv, code)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if code != 0:
        assert err.getvalue().strip(), (argv, "a failure must say why")
    return code


def test_fuzz_command_lines_never_end_in_a_traceback(fuzz_long, tmp_path_factory, threads):
    tmp = tmp_path_factory.mktemp("cli-fuzz")
    (tmp / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 20)
    (tmp / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp / "empty.txt").write_text("")
    codes: Counter = Counter()

    @_settings(fuzz_long, quick=60, long=LONG // 10)
    @given(argv=command_lines(tmp))
    def check(argv):
        if "--steps" not in argv and argv[0] == "charrnn" and argv[1] == "train":
            argv = [*argv, "--steps", "2"]
        if "--steps" not in argv and argv[0] == "train":
            argv = [*argv, "--steps", "2"]
        codes[_cli_is_clean(argv)] += 1

    check()
    print(f"CLI fuzz: exit codes {dict(codes)}")
    assert codes[0] > 0 and sum(v for k, v in codes.items() if k) > 0
