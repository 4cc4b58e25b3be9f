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

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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
    for name in ("capi_demo.pyx", "setup.py", "run.py"):
        shutil.copy(EXAMPLES / "cython" / name, tmp_path / name)
    # run.py builds the extension (setup.py build_ext --inplace), then compares it with
    # rnnfast.LSTM bit for bit: what a reader of examples/cython runs.
    run = subprocess.run(
        [sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=400
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "arrays bitwise equal to rnnfast.LSTM's" in run.stdout
    assert "us through the C API" in run.stdout
    assert list(tmp_path.glob("capi_demo*.so")), "run.py did not build the extension"
