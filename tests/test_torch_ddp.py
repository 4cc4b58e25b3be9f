"""rnnfast.torch under DistributedDataParallel (gloo, 2 processes on the loopback interface)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rnnfast.torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"


def _example():
    spec = importlib.util.spec_from_file_location("ddp_train", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_process_ddp_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    out = tmp_path / "grads.npz"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, str(EXAMPLE), "--world-size", "2", "--steps", "2", "--batch", "8"]
    cmd += ["--dtype", "float64", "--save-grads", str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "step    1" in run.stdout

    ex = _example()
    model = ex.make_model(0, torch.float64)
    ex.loss_of(model, ex.make_batch(0, 8)).backward()
    saved = np.load(out)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(saved.files) == sorted(names)
    for name, p in model.named_parameters():  # the mean of two half-batch means
        np.testing.assert_allclose(saved[name], p.grad.numpy(), rtol=1e-10, atol=1e-13)
