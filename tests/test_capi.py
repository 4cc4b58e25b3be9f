"""rnnfast's C API, reached the two ways an extension author would: a Cython module that
cimports rnnfast (through the capsule, built here with setuptools), and a C++ program built with
CMake against the installed package (find_package(rnnfast)). Both are the examples/ directory's,
built at test time; both must give the Python API's numbers bit for bit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnfast

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _value(n: np.ndarray) -> np.ndarray:
    """main.cpp's exact formula: (n mod 101 - 50) / 200 in float32."""
    return (n % 101 - 50).astype(np.float32) / np.float32(200)


def test_installed_files_are_where_the_helpers_say():
    assert (Path(rnnfast.get_include()) / "rnnfast.h").is_file()
    assert (Path(rnnfast.get_cmake_dir()) / "rnnfastConfig.cmake").is_file()
    assert any(p.name.startswith("librnnfast") for p in Path(rnnfast.get_library_dir()).iterdir())
    assert (Path(rnnfast.__file__).parent / "__init__.pxd").is_file()
    assert type(rnnfast._core._C_API).__name__ == "PyCapsule"


@pytest.mark.build_tools
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cpp_program_against_the_cmake_package(tmp_path):
    build = tmp_path / "build"
    configure = [
        "cmake",
        "-S",
        str(EXAMPLES / "cpp"),
        "-B",
        str(build),
        f"-Drnnfast_DIR={rnnfast.get_cmake_dir()}",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    for cmd in (configure, ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = subprocess.run([str(build / "lstm_demo")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [ln.split() for ln in run.stdout.splitlines()]
    got = {}
    for ln in lines:
        got.setdefault(ln[0], []).append(np.array(ln[1:], np.float32))

    m = rnnfast.LSTM(4, 6, 2)
    n = 0
    with m.params.writable() as params:
        for p in params.values():
            p.reshape(-1)[...] = _value(np.arange(n, n + p.size) * 7)
            n += p.size
    x = _value(np.arange(5 * 3 * 4) * 13 + 5).reshape(5, 3, 4)
    dy = _value(np.arange(5 * 3 * 6) * 3 + 1).reshape(5, 3, 6)
    y, (h, c), tape = m.forward(x)  # bitwise whatever either side's thread count
    dx, _ = m.backward(tape, dy)
    for name, want in [("y", y), ("h_n", h), ("c_n", c), ("dx", dx), ("y_step", y)]:
        np.testing.assert_array_equal(got[name][0], want.reshape(-1), err_msg=name)
    for g, want in zip(got["grad"], m.grads.values()):
        np.testing.assert_array_equal(g, want.reshape(-1))
    assert got["threads"][0][0] >= 1


@pytest.mark.build_tools
def test_cython_module_that_cimports_rnnfast(tmp_path):
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    for name in ("capi_demo.pyx", "setup.py"):
        shutil.copy(EXAMPLES / "cython" / name, tmp_path / name)
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    code = """
import sys, numpy as np, rnnfast
sys.path.insert(0, ".")
import capi_demo
m = rnnfast.LSTM(5, 8, 2, seed=0)
x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
dy = np.random.default_rng(1).standard_normal((6, 3, 8)).astype(np.float32)
out = capi_demo.run([np.array(p) for p in m.params.values()], x, dy, 8, 2)
y, (h, c), tape = m.forward(x)
dx, (dh0, dc0) = m.backward(tape, dy)
want = [y, h, c, dx, dh0, dc0]
assert all(a.tobytes() == b.tobytes() for a, b in zip(out[:6], want)), "outputs differ"
assert all(a.tobytes() == g.tobytes() for a, g in zip(out[6], m.grads.values())), "grads differ"
assert out[7].tobytes() == y.tobytes(), "step differs"
print("bitwise equal")
"""
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "bitwise equal" in run.stdout
