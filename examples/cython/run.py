"""Builds capi_demo (if it is not built yet) and runs it: an LSTM's forward, backward and
streaming step through rnnfast's C API from Cython, compared bit for bit with rnnfast.LSTM, then
the cost of a small forward through the C API beside the Python API's.

    cd examples/cython && python run.py      (needs cython and setuptools)
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import rnnfast

HERE = Path(__file__).resolve().parent


def build() -> None:
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=HERE, check=True
    )


def main() -> int:
    sys.path.insert(0, str(HERE))
    try:
        capi_demo = importlib.import_module("capi_demo")
    except ImportError:
        build()
        capi_demo = importlib.import_module("capi_demo")

    m = rnnfast.LSTM(5, 8, 2, seed=0)
    params = [np.array(p) for p in m.params.values()]
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((6, 3, 8)).astype(np.float32)
    y, h_n, c_n, dx, dh0, dc0, grads, y_step = capi_demo.run(params, x, dy, 8, 2)

    want_y, (want_h, want_c), tape = m.forward(x)
    want_dx, (want_dh0, want_dc0) = m.backward(tape, dy)
    pairs = {
        "y": (y, want_y),
        "h_n": (h_n, want_h),
        "c_n": (c_n, want_c),
        "dx": (dx, want_dx),
        "dh0": (dh0, want_dh0),
        "dc0": (dc0, want_dc0),
        "y one step at a time": (y_step, want_y),
        **{f"grad {k}": (g, w) for (k, w), g in zip(m.grads.items(), grads)},
    }
    differ = [name for name, (a, b) in pairs.items() if a.tobytes() != b.tobytes()]
    if differ:
        print(f"capi_demo: differs from rnnfast.LSTM in {', '.join(differ)}")
        return 1
    print(f"capi_demo: {len(pairs)} arrays bitwise equal to rnnfast.LSTM's")

    small = rnnfast.LSTM(32, 32, seed=0)
    x1 = np.zeros((1, 1, 32), np.float32)
    per_call = capi_demo.time_calls([np.array(p) for p in small.params.values()], x1, 32, 1, 20000)
    calls = 20000
    start = time.perf_counter()
    for _ in range(calls):
        small.forward(x1)
    python_call = (time.perf_counter() - start) / calls
    print(
        f"T=1 B=1 LSTM(32) forward: {1e6 * per_call:.2f} us through the C API (a nogil loop), "
        f"{1e6 * python_call:.2f} us through rnnfast.LSTM"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
