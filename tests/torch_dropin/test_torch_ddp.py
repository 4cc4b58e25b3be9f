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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ddp_train.py"


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(timeout_s: float):
    """The example's two ranks as torchrun starts them (env://), on the loopback interface."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "GLOO_SOCKET_IFNAME": "lo",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": "2",
        }
        cmd = [sys.executable, str(EXAMPLE), "--steps", "100000", "--batch", "8"]
        cmd += ["--timeout", str(timeout_s)]
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    assert "step    0" in procs[0].stdout.readline()  # both are training
    return procs


@pytest.mark.parametrize("fault", ["stopped", "killed"])
def test_a_peer_that_stops_answering_or_dies_ends_the_other_cleanly(fault):
    """A SIGSTOPped rank 1 or a killed rank 0: the survivor exits 1 within the timeout, with a
    message, never blocking for gloo's 30 minutes nor aborting (SIGABRT) at teardown."""
    import signal
    import time

    procs = _start_ranks(timeout_s=5)
    victim, survivor = (procs[1], procs[0]) if fault == "stopped" else (procs[0], procs[1])
    try:
        os.kill(victim.pid, signal.SIGSTOP if fault == "stopped" else signal.SIGKILL)
        start = time.monotonic()
        code = survivor.wait(timeout=60)
        waited = time.monotonic() - start
        err = survivor.stderr.read()
        assert code == 1, (code, err[-2000:])
        assert "a peer failed or did not answer within 5.0 s" in err, err[-2000:]
        assert waited < 30, waited
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            p.stdout.close()
            p.stderr.close()
