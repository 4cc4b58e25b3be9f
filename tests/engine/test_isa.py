"""Runtime dispatch: the chosen ISA, RNNFAST_ISA, and the whole numeric suite under every ISA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rnnfast

HERE = Path(__file__).parent


def _python(code: str, isa: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RNNFAST_ISA"}
    if isa is not None:
        env["RNNFAST_ISA"] = isa
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_best_isa_is_chosen_by_default() -> None:
    out = _python("import rnnfast; print(rnnfast.isa())", None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == rnnfast.show_config()["supported_isas"][0]


def test_config_reports_isa_compiler_and_threads() -> None:
    cfg = rnnfast.show_config()
    assert cfg["isa"] in cfg["supported_isas"] and "generic" in cfg["supported_isas"]
    assert cfg["compiler"] and cfg["num_threads"] >= 1


@pytest.mark.parametrize("isa", rnnfast.show_config()["supported_isas"])
def test_forced_isa_is_used(isa: str) -> None:
    out = _python("import rnnfast; print(rnnfast.isa())", isa)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == isa


ALL_ISAS = "avx512_amx, avx512_bf16, avx512, avx2, neon, generic"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sse9", f"RNNFAST_ISA: expected one of {ALL_ISAS}, got 'sse9'"),
        ("AVX2", f"RNNFAST_ISA: expected one of {ALL_ISAS}, got 'AVX2'"),
    ],
)
def test_unknown_isa_fails_the_import_clearly(value: str, message: str) -> None:
    out = _python("import rnnfast", value)
    assert out.returncode != 0
    assert message in out.stderr


def test_unsupported_isa_fails_the_import_clearly() -> None:
    supported = rnnfast.show_config()["supported_isas"]
    missing = [
        i for i in ("avx512_amx", "avx512_bf16", "avx512", "avx2", "neon") if i not in supported
    ]
    out = _python("import rnnfast", missing[0])
    assert out.returncode != 0
    assert f"RNNFAST_ISA: '{missing[0]}' is not supported by this CPU or build" in out.stderr


AVX512_LEVELS = ("avx512_amx", "avx512_bf16", "avx512")
OTHER_ISAS = [i for i in rnnfast.show_config()["supported_isas"] if i != rnnfast.isa()]


@pytest.mark.skipif("RNNFAST_ISA" in os.environ, reason="already running under a forced ISA")
@pytest.mark.parametrize("isa", OTHER_ISAS)
def test_numeric_suite_passes_under_every_other_isa(isa: str) -> None:
    """Parity, determinism, activation bounds, bf16 and the direct step again, in a process forced
    to `isa`; only bf16 between the AVX-512 levels, which run the same float32 kernels."""
    files = [
        "test_parity.py",
        "test_determinism.py",
        "test_activations.py",
        "test_bf16.py",
        "test_direct_step.py",
    ]
    if isa in AVX512_LEVELS and rnnfast.isa() in AVX512_LEVELS:
        files = ["test_bf16.py"]
    env = {**os.environ, "RNNFAST_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
