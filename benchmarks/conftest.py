"""Options for the benchmark suite: `--bench-quick` runs the quick grid (CI smoke runs)."""

from __future__ import annotations

import pytest

from rnnfast.cli.bench import CELLS, DEFAULT_SIZES, QUICK_SIZES


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-quick", action="store_true", help="the small grid of rnnfast bench --quick"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size" in metafunc.fixturenames:
        sizes = QUICK_SIZES if metafunc.config.getoption("--bench-quick") else DEFAULT_SIZES
        metafunc.parametrize("size", sizes, ids=[f"T{t}-B{b}-H{h}" for t, b, h in sizes])
    if "cell" in metafunc.fixturenames:
        metafunc.parametrize("cell", list(CELLS))
