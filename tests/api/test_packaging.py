"""What a packaged rnnfast must be: one version everywhere, an sdist that holds every file of the
repository, and a process that holds two OpenMP runtimes (rnnfast's libgomp and the one torch's
wheel bundles) working in either import order, threaded, and across fork()."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

import rnnfast

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere():
    version = rnnfast.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", version), version
    assert importlib.metadata.version("rnnfast") == version
    assert rnnfast.show_config()["version"] == version
    cli = subprocess.run(
        [sys.executable, "-m", "rnnfast", "--version"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and cli.stdout.split() == ["rnnfast", version], cli
    changelog = ROOT / "CHANGELOG.md"
    if changelog.exists():  # in the source tree or the sdist, not in an installed wheel
        heading = re.search(r"^## (\S+)", changelog.read_text(), re.MULTILINE)
        assert heading and heading.group(1) == version, "CHANGELOG's newest section"


@pytest.mark.build_tools
def test_the_sdist_holds_every_file_of_the_repository(tmp_path):
    pytest.importorskip("build.__main__")  # pypa build (a build/ directory is no module)
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (sdist,) = tmp_path.glob("rnnfast-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [f for f in tracked if (ROOT / f).is_file() and f not in names]
    assert not missing, f"files of the repository missing from the sdist: {missing}"
    assert not any(n.startswith("build/") for n in names), "build products in the sdist"


@pytest.mark.parametrize("first", ["torch", "rnnfast"])
def test_two_openmp_runtimes_in_one_process(first):
    """Each library keeps its own thread pool; in either import order both compute what one
    thread computes, one after the other and interleaved, and a forked child runs both. (The
    child sets torch to one thread first, as DataLoader workers do: torch's own libgomp pool
    hangs in a child forked after it ran, rnnfast or not; rnnfast's goes single-threaded.)"""
    pytest.importorskip("torch")
    code = textwrap.dedent(
        f"""
        import os, sys
        if {first!r} == "torch":
            import torch, rnnfast, rnnfast.torch as rt
        else:
            import rnnfast, rnnfast.torch as rt, torch
        import numpy as np

        torch.manual_seed(0)
        a = torch.randn(512, 512)
        m = rnnfast.LSTM(64, 128, seed=0)
        x = np.random.default_rng(0).standard_normal((50, 2, 64)).astype(np.float32)
        tm = rt.GRU(64, 128)
        tx = torch.from_numpy(x)

        def work():
            with torch.no_grad():
                return [(a @ a).numpy().copy(), m(x)[0], tm(tx)[0].numpy().copy()]

        torch.set_num_threads(1); rnnfast.set_num_threads(1)
        want = work()
        torch.set_num_threads(2); rnnfast.set_num_threads(2)
        for _ in range(20):  # both pools threaded, taking turns
            got = work()
        assert all(np.array_equal(g, w) for g, w in zip(got[1:], want[1:])), "rnnfast differs"
        assert np.allclose(got[0], want[0], rtol=1e-4, atol=1e-3), "torch's product differs"
        pid = os.fork()
        if pid == 0:  # the child: both libraries again (rnnfast alone on one thread)
            torch.set_num_threads(1)
            child = work()
            ok = all(np.array_equal(g, w) for g, w in zip(child[1:], want[1:]))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
