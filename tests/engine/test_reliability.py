"""No silent wrong answer, hang or crash: OpenMP settings, fork, NaN, zero sizes, threads, input
that is not an ndarray, concurrent backward, exact conversion."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CELL_IDS, CELLS, make, state_arrays

import rnnfast
from rnnfast import reference

ROOT = Path(__file__).resolve().parents[2]


def _python(
    code: str, env: dict[str, str] | None = None, timeout: float = 120, unset: tuple[str, ...] = ()
):
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---- 1. the team OpenMP grants ---------------------------------------------------------------

# Every cell, both ways of sharing the recurrence (rows: B=64; units: B=2), forward and backward,
# against the reference; run in a subprocess so the OpenMP setting applies from the start.
TEAM_CHECK = """
import numpy as np, rnnfast
from rnnfast import reference
cells = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {}),
         ("GRU", {"linear_before_reset": False})]
worst = 0.0
for name, kw in cells:
    for batch in (64, 2):
        m = getattr(rnnfast, name)(16, 128, seed=0, **kw)
        r = getattr(reference, name)(16, 128, seed=0, dtype=np.float64, **kw)
        x = np.random.default_rng(1).standard_normal((20, batch, 16)).astype(np.float32)
        y, _, tape = m.forward(x)
        dx, _ = m.backward(tape, np.ones_like(y))
        yr, _, taper = r.forward(x.astype(np.float64))
        dxr, _ = r.backward(taper, np.ones_like(yr))
        for a, b in [(y, yr), (dx, dxr)] + [(m.grads[k], r.grads[k]) for k in r.grads]:
            worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
print(worst)
"""


@pytest.mark.parametrize(
    "env",
    [{"OMP_THREAD_LIMIT": "1"}, {"OMP_DYNAMIC": "true"}, {"OMP_NUM_THREADS": "64"}],
    ids=["thread_limit_1", "dynamic", "64_threads"],
)
def test_any_team_size_gives_the_reference_answer(env):
    out = _python(TEAM_CHECK, env)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 1e-5, out.stdout


def test_more_threads_than_cores_match_one_thread_bitwise(threads):
    m = rnnfast.LSTM(16, 128, seed=0)
    x = np.random.default_rng(1).standard_normal((20, 3, 16)).astype(np.float32)
    threads(1)
    want = m(x)[0]
    threads(64)
    assert m(x)[0].tobytes() == want.tobytes()


@pytest.fixture(scope="session")
def cpp_tests() -> Path:
    """The C++ test programs of tests/cpp, built with the project's CMake in build/cpp-tests
    (kept: a later run rebuilds only what changed)."""
    if not (ROOT / "CMakeLists.txt").exists() or shutil.which("cmake") is None:
        pytest.skip("needs the source tree and cmake")
    build = ROOT / "build" / "cpp-tests"
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DRNNFAST_BUILD_TESTS=ON"]
    configure.append("-DCMAKE_BUILD_TYPE=Release")
    if shutil.which("ninja") and not (build / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build), "--target", "check_threads", "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build


@pytest.mark.build_tools
def test_layer_called_from_inside_a_parallel_region(cpp_tests):
    """C++: the same bits from one thread, two, 64, and from inside an OpenMP caller's team."""
    done = subprocess.run(
        [str(cpp_tests / "check_threads")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "check_threads: ok" in done.stdout, done.stdout + done.stderr


# ---- 2. zero work costs nothing -----------------------------------------------------------


@pytest.mark.parametrize("engine", ["rnnfast", "rnnfast.reference"])
def test_empty_batch_with_huge_sequence_is_instant(engine):
    code = f"""
        import numpy as np, {engine} as e
        for cls in (e.RNN, e.LSTM, e.GRU):
            m = cls(4, 8, bidirectional=True, num_layers=2)
            x = np.empty((10**12, 0, 4), np.float32)
            y, s, tape = m.forward(x)
            dx, ds = m.backward(tape)
            assert y.shape == (10**12, 0, 16) and dx.shape == x.shape
        print("ok")
    """
    out = _python(code, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---- 2b. small calls after a pause -----------------------------------------------------------

# Waking libgomp's sleeping threads took 50-400 us on a 2-vCPU VM, and a 5-step B = 1 LSTM call
# 1.4 ms on two threads after a pause against 38 us on one: such a call runs alone; a large
# call, a call back to back with the last, or RNNFAST_ALWAYS_TEAM=1 keep the team.
PAUSE_CHECK = """
import time, numpy as np, rnnfast
from rnnfast import _core
rnnfast.set_num_threads(2)
small, large = 1 << 20, 1 << 30
time.sleep(0.01)
paused = (_core.call_runs_alone(small), _core.call_runs_alone(large))
m = rnnfast.LSTM(8, 8)
x = np.zeros((2, 1, 8), np.float32)
kept = False
for _ in range(5):  # (a preempted process may see its own pause)
    m(x)
    if not _core.call_runs_alone(small):
        kept = True
        break
time.sleep(0.01)
rnnfast.set_num_threads(1)
print(paused[0], paused[1], kept, _core.call_runs_alone(small))
"""


def test_small_calls_after_a_pause_run_alone_and_loops_keep_the_team():
    out = _python(PAUSE_CHECK, timeout=60, unset=("RNNFAST_ALWAYS_TEAM",))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False", "True", "False"]
    out = _python(PAUSE_CHECK, {"RNNFAST_ALWAYS_TEAM": "1"}, timeout=60)
    assert out.stdout.split() == ["False", "False", "True", "False"], out.stderr[-2000:]


# A thread can ask that its small calls run alone even back to back (calls from inside another
# runtime's graph: rnnfast/onnx/_session.py); large calls keep the team, other threads and
# RNNFAST_ALWAYS_TEAM=1 are unaffected, and the setting returns the one it replaces.
SMALL_ALONE_CHECK = """
import threading, numpy as np, rnnfast
from rnnfast import _core
rnnfast.set_num_threads(2)
small, large = 1 << 20, 1 << 30
m = rnnfast.LSTM(8, 8)
x = np.zeros((2, 1, 8), np.float32)
for _ in range(5):  # back to back: the team is awake (a preempted process may see a pause)
    m(x)
    before = _core.call_runs_alone(small)
    if not before:
        break
previous = _core.set_small_calls_alone(True)
inside = (_core.call_runs_alone(small), _core.call_runs_alone(large))
other = []
t = threading.Thread(target=lambda: other.append(_core.set_small_calls_alone(False)))
m(x)
t.start(); t.join()
y_alone, _ = m(np.ones((2, 1, 8), np.float32))
restored = _core.set_small_calls_alone(previous)
y_team, _ = m(np.ones((2, 1, 8), np.float32))
print(before, previous, inside[0], inside[1], restored, other[0], bool((y_alone == y_team).all()))
"""


def test_a_thread_can_ask_its_small_calls_to_run_alone():
    out = _python(SMALL_ALONE_CHECK, timeout=60, unset=("RNNFAST_ALWAYS_TEAM",))
    assert out.returncode == 0, out.stderr[-2000:]
    # (The other thread's setting is its own: still the default, False, when it sets it.)
    assert out.stdout.split() == ["False", "False", "True", "False", "True", "False", "True"]
    out = _python(SMALL_ALONE_CHECK, {"RNNFAST_ALWAYS_TEAM": "1"}, timeout=60)
    assert out.stdout.split() == ["False", "False", "False", "False", "True", "False", "True"], (
        out.stderr[-2000:]
    )


# ---- 3. fork ---------------------------------------------------------------------------


FORK_CHECK = """
import os, multiprocessing as mp, numpy as np, rnnfast
m = rnnfast.LSTM(64, 256, seed=0)
x = np.random.default_rng(0).standard_normal((20, 64, 64)).astype(np.float32)
want = m(x)[0]  # the parent runs a team first

def work(_):
    return m(x)[0]

pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(m(x)[0], want) else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
with mp.get_context("fork").Pool(2) as pool:
    results = pool.map(work, range(4))
assert all(np.array_equal(r, want) for r in results)
assert np.array_equal(m(x)[0], want)  # and the parent still runs its team
print("ok")
"""


def test_forked_children_compute_the_same_answer():
    out = _python(FORK_CHECK, {"OMP_NUM_THREADS": "2"}, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ---- 4, 5. NaN -----------------------------------------------------------------------------


def test_relu_rnn_propagates_nan_as_pytorch_and_the_reference():
    x = np.ones((4, 2, 3))
    x[1, 0, 0] = np.nan
    kw = dict(nonlinearity="relu", input_size=3, hidden_size=5, dtype=np.float64, seed=0)
    fast, ref = rnnfast.RNN(**kw), reference.RNN(**kw)
    results = []
    for m in (fast, ref):
        y, h, tape = m.forward(x)
        dx, dh0 = m.backward(tape, np.ones_like(y))
        results.append([y, h, dx, dh0, *m.grads.values()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, equal_nan=True)
    y = results[0][0]
    assert np.isnan(y[1:, 0]).all() and not np.isnan(y[:, 1]).any()
    torch = pytest.importorskip("torch")
    t = torch.nn.RNN(3, 5, nonlinearity="relu").double()
    t.load_state_dict({k: torch.from_numpy(v) for k, v in ref.state_dict().items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    yt, _ = t(xt)
    yt.backward(torch.ones_like(yt))
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(xt.grad.numpy(), results[0][2], rtol=1e-10, equal_nan=True)


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=CELL_IDS)
def test_nan_in_padding_touches_no_gradient(cls, kw, engine):
    """What lies past a sequence's length is never read: NaN there changes nothing."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4))
    lengths = [6, 2, 4]
    padded = x.copy()
    for b, n in enumerate(lengths):
        padded[n:, b] = np.nan
    runs = []
    for inp in (x, padded):
        m = make(
            engine,
            cls,
            kw,
            input_size=4,
            hidden_size=5,
            num_layers=2,
            bidirectional=True,
            dtype=np.float64,
            seed=3,
        )
        y, s, tape = m.forward(inp, lengths=lengths)
        dx, ds = m.backward(tape, np.ones_like(y), s)
        runs.append([y, *state_arrays(s), *state_arrays(ds), *m.grads.values()])
        for b, n in enumerate(lengths):
            assert not dx[n:, b].any()
            np.testing.assert_array_equal(np.isnan(dx[:n, b]), False)
    for a, b in zip(*runs):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)


# ---- 6. the tape owns its copy of x ---------------------------------------------------------


class ArrayLike:
    def __init__(self, arr):
        self.arr = arr

    def __array__(self, dtype=None, copy=None):
        return self.arr


def _memoryview(arr):
    return memoryview(arr)


def _torch_tensor(arr):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(arr)


@pytest.mark.parametrize(
    "wrap",
    [ArrayLike, _memoryview, _torch_tensor, lambda a: a],
    ids=["__array__", "memoryview", "torch", "ndarray"],
)
def test_changing_the_input_after_forward_does_not_change_backward(wrap):
    data = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    expected = rnnfast.GRU(3, 4, seed=1)
    y, _, tape = expected.forward(data.copy())
    expected.backward(tape, np.ones_like(y))
    m = rnnfast.GRU(3, 4, seed=1)
    source = data.copy()
    y, _, tape = m.forward(wrap(source))
    source *= 7  # the caller reuses its buffer
    m.backward(tape, np.ones_like(y))
    for k in m.grads:
        np.testing.assert_array_equal(m.grads[k], expected.grads[k])


# ---- 7. concurrent backward ----------------------------------------------------------------


def test_concurrent_backward_accumulates_every_gradient():
    # Large enough that the weight-gradient products of 8 threads overlap (lost updates showed
    # as relative errors of 3e-3 before the lock).
    m = rnnfast.LSTM(64, 256, seed=0)
    x = np.random.default_rng(0).standard_normal((10, 32, 64)).astype(np.float32)
    y, _, tape = m.forward(x)
    m.backward(tape, np.ones_like(y))
    once = {k: g.copy() for k, g in m.grads.items()}
    n = 8
    errors = []

    def work(tape, barrier):
        try:
            barrier.wait()
            m.backward(tape, np.ones_like(y))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _ in range(10):  # a race shows in some rounds only
        m.zero_grad()
        barrier = threading.Barrier(n)
        tapes = [m.forward(x)[2] for _ in range(n)]
        workers = [threading.Thread(target=work, args=(t, barrier)) for t in tapes]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors
        for k in m.grads:  # the order of the 8 additions varies: float rounding, no more
            err = np.abs(m.grads[k] - n * once[k]).max() / np.abs(n * once[k]).max()
            assert err < 1e-5, (k, err)


# ---- 11. thread counts ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 1025, 99999999999, 2**31])
def test_set_num_threads_out_of_range_names_n(n):
    with pytest.raises(ValueError, match=r"n: expected a number of threads in \[1, 1024\]"):
        rnnfast.set_num_threads(n)


@pytest.mark.parametrize("n", [2.0, "2", True])
def test_set_num_threads_wants_an_integer(n):
    with pytest.raises(TypeError, match=r"n: expected an integer"):
        rnnfast.set_num_threads(n)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics")
def test_threads_that_cannot_start_raise_instead_of_exiting():
    """libgomp exits the process when it cannot create a thread; rnnfast checks first."""
    code = """
        import resource, numpy as np, rnnfast
        m = rnnfast.LSTM(8, 256, seed=0)
        x = np.ones((3, 1, 8), np.float32)
        rnnfast.set_num_threads(1)
        m(x)
        # Address space for what is mapped now plus a little: no room for 8 MiB thread stacks.
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (16 << 20), resource.RLIM_INFINITY))
        try:
            rnnfast.set_num_threads(32)
        except RuntimeError as exc:
            print("refused:", exc)
        print("threads", rnnfast.get_num_threads())
        print("works", bool(np.isfinite(m(x)[0]).all()))
    """
    out = _python(code, {"OMP_STACKSIZE": "8M"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused: n: only" in out.stdout and "threads could be started here" in out.stdout
    assert "threads 1" in out.stdout and "works True" in out.stdout


# ---- 12. exact conversion -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (2**60 + 1, np.float32),
        (2**24 + 1, np.float32),
        (2**53 + 1, np.float64),
        (-(2**53) - 1, np.float64),
        (2**63 - 1, np.float64),
        (np.iinfo(np.uint64).max, np.float64),
    ],
)
def test_inexact_integers_are_refused(value, dtype):
    arr = np.full((2, 1, 1), value, dtype=np.uint64 if value > 2**63 else np.int64)
    m = rnnfast.RNN(1, 2, dtype=dtype)
    with pytest.raises(TypeError, match=r"x: integer values cannot be represented exactly"):
        m(arr)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(2**60, np.float32), (2**24, np.float32), (-(2**53), np.float64), (2**63 - 2**40, np.float64)],
)
def test_exact_large_integers_are_accepted(value, dtype):
    m = rnnfast.RNN(1, 2, dtype=dtype, seed=0)
    y, _ = m(np.full((2, 1, 1), value, dtype=np.int64))
    np.testing.assert_array_equal(y, m(np.full((2, 1, 1), float(value), dtype=dtype))[0])


def test_nested_lists_of_floats_round_like_torch_tensor():
    m = rnnfast.GRU(2, 3, seed=0)
    nested = [[[0.1, -2.5]], [[1e-3, 7.0]]]
    np.testing.assert_array_equal(m(nested)[0], m(np.array(nested, np.float32))[0])
    with pytest.raises(ValueError, match=r"x: values beyond the range of float32"):
        m([[[1e300, 0.0]]])
    with pytest.raises(TypeError, match=r"x: expected dtype float32"):
        m(np.array(nested))  # an array's dtype is the caller's choice: no silent rounding


# ---- 13, 14. options ------------------------------------------------------------------------


def test_forward_reads_parameter_shapes_once_per_module(monkeypatch):
    """Forward used to rebuild the shape table per layer: quadratic in num_layers."""
    m = rnnfast.GRU(3, 4, num_layers=40, seed=0)
    calls = []
    original = type(m)._compute_param_shapes
    monkeypatch.setattr(
        type(m), "_compute_param_shapes", lambda self: calls.append(1) or original(self)
    )
    y, _, tape = m.forward(np.ones((2, 1, 3), np.float32))
    m.backward(tape, y)
    assert calls == []


@pytest.mark.parametrize(
    ("seed", "exc"), [(-1, ValueError), (1.5, TypeError), ("7", TypeError), (True, TypeError)]
)
def test_bad_seed_is_named(seed, exc):
    with pytest.raises(exc, match=r"seed: expected None or an integer >= 0"):
        rnnfast.LSTM(2, 3, seed=seed)


@pytest.mark.parametrize("option", ["batch_first", "bidirectional", "bias"])
@pytest.mark.parametrize("value", ["False", "no", 0, 1, None])
def test_boolean_options_want_booleans(option, value):
    with pytest.raises(TypeError, match=rf"{option}: expected True or False"):
        rnnfast.GRU(2, 3, **{option: value})


def test_boolean_options_on_gru_forward_and_backward():
    with pytest.raises(TypeError, match=r"linear_before_reset: expected True or False"):
        rnnfast.GRU(2, 3, linear_before_reset="False")
    m = rnnfast.GRU(2, 3)
    with pytest.raises(TypeError, match=r"training: expected True or False"):
        m.forward(np.ones((2, 1, 2), np.float32), training="no")
    _, _, tape = m.forward(np.ones((2, 1, 2), np.float32))
    with pytest.raises(TypeError, match=r"input_grad: expected True or False"):
        m.backward(tape, input_grad="no")


def test_module_copies_and_pickles():
    import copy
    import pickle

    m = rnnfast.LSTM(2, 3, seed=0)
    x = np.ones((2, 1, 2), np.float32)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(other(x)[0], m(x)[0])
        _, _, tape = other.forward(x)
        other.backward(tape)


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
def test_nan_made_by_a_real_step_does_not_leak_through_padding(engine):
    """Found by the long fuzz run: a NaN state made at a sequence's last real step is carried
    through its padding, where dW_hh = dG^T h_prev multiplied it by zero gradients. (Seen with
    ReLU, whose slope at NaN is 1; other cells' gate derivatives are NaN at that real step
    already, so their dW_hh is NaN there as in PyTorch.)"""
    x = np.ones((4, 2, 3))
    x[0, 1, 0] = np.nan  # sequence 1's only real step makes a NaN state
    m = engine.RNN(3, 4, nonlinearity="relu", dtype=np.float64, seed=0)
    _, _, tape = m.forward(x, lengths=[4, 1])
    m.backward(tape)  # no gradient anywhere: dG = 0 at every step
    # dW_ih has 0 * NaN at the real step (as in PyTorch); dW_hh's real steps read h0 (finite)
    # and must not see the NaN state carried through the padding.
    assert np.isnan(m.grads["weight_ih_l0"]).any()
    assert np.isfinite(m.grads["weight_hh_l0"]).all()


# ---- libgomp's idle spinning (src/rnnfast/_openmp.py) -----------------------------------------


@pytest.mark.parametrize(
    ("env", "shown"),
    [({}, "30000"), ({"GOMP_SPINCOUNT": "7"}, "7")],
    ids=["rnnfast_sets_it", "the_users_wins"],
)
def test_libgomp_spins_briefly_and_the_environment_is_left_as_it_was(env, shown):
    """libgomp prints what it read at load with OMP_DISPLAY_ENV: rnnfast's copy gets a short
    spin unless the user chose one, and the variable is gone again after the import."""
    unset = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    full = {k: v for k, v in os.environ.items() if k not in unset}
    full.update(env, OMP_DISPLAY_ENV="verbose")
    done = subprocess.run(
        [sys.executable, "-c", "import os, rnnfast; print(os.environ.get('GOMP_SPINCOUNT'))"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if "GOMP_SPINCOUNT" not in done.stderr:
        pytest.skip("this OpenMP runtime is not libgomp (no GOMP_SPINCOUNT to display)")
    assert f"GOMP_SPINCOUNT = '{shown}'" in done.stderr
    assert done.stdout.strip() == env.get("GOMP_SPINCOUNT", "None")


@pytest.mark.parametrize(
    ("first", "env", "setting"),
    [
        ("", {}, "rnnfast"),
        ("", {"GOMP_SPINCOUNT": "7"}, "user"),
        ("", {"OMP_WAIT_POLICY": "passive"}, "user"),
        ("import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library('gomp')); ", {}, None),
    ],
    ids=["rnnfast_sets_it", "the_users_spincount", "the_users_policy", "a_libgomp_loaded_first"],
)
def test_show_config_says_who_set_libgomps_spinning(first, env, setting):
    """A libgomp loaded before rnnfast (PyTorch's, when torch is imported first) keeps whatever
    its loader had: show_config says so, as it says when rnnfast or the user set it."""
    if "find_library" in first and ctypes.util.find_library("gomp") is None:
        pytest.skip("no libgomp on this machine to load first")
    unset = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    full = {k: v for k, v in os.environ.items() if k not in unset}
    full.update(env)
    code = first + "import rnnfast; print(rnnfast.show_config()['libgomp_spin'])"
    done = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    shown = done.stdout.strip()
    if setting == "rnnfast" and shown == "no libgomp":
        pytest.skip("this build's OpenMP runtime is not libgomp")
    if not os.path.exists("/proc/self/maps"):
        assert shown in ("user", "unknown")
        return
    assert shown == (setting or "loaded before rnnfast")
