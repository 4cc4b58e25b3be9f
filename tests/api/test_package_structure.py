"""How the Python package hangs together: no import cycle between its modules, the NumPy oracle
independent of the extension it checks, and one cell registry that agrees with the C++ core."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnfast import _cells, _core

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "rnnfast"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports anywhere in its file (inside functions too): a
    cycle hidden in a function body is still a cycle."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rnnfast."))
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle_between_the_packages_modules():
    """The package's __init__ is its facade (it names what it exports, PEP 562) and is left
    out; between every other pair of modules imports go one way."""
    modules = _modules()
    roots = {"rnnfast", "rnnfast.torch", "rnnfast.onnx"}
    graph = {m: _imports(m, p, modules) - roots for m, p in modules.items() if m not in roots}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_command_line_sits_on_top():
    """rnnfast.cli (the commands and their helpers) uses the library; nothing of the library
    imports it back (python -m rnnfast is only its entry point)."""
    modules = _modules()
    below = {m: _imports(m, p, modules) for m, p in modules.items()}
    reach = {
        m: sorted(i for i in imports if i == "rnnfast.cli" or i.startswith("rnnfast.cli."))
        for m, imports in below.items()
        if not m.startswith("rnnfast.cli") and m != "rnnfast.__main__"
    }
    assert {m: r for m, r in reach.items() if r} == {}
    assert any(m.startswith("rnnfast.cli.") for m in modules)  # the walk saw the package


def test_the_reference_runs_without_the_extension():
    """rnnfast.reference, the oracle, must not depend on what it checks: with rnnfast._core made
    unimportable (and the package's __init__, which loads it, skipped), it imports and runs."""
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys, types
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "rnnfast._core":
                    raise ImportError("the extension is blocked for this test")
        sys.meta_path.insert(0, Block())
        package = types.ModuleType("rnnfast")
        package.__path__ = [{str(PACKAGE)!r}]
        sys.modules["rnnfast"] = package
        import numpy as np
        from rnnfast import reference
        m = reference.LSTM(3, 4, seed=0, dtype=np.float64)
        y, (h, c), tape = m.forward(np.ones((5, 2, 3)))
        dx, _ = m.backward(tape, np.ones_like(y))
        assert "rnnfast._core" not in sys.modules
        print("ran", y.shape, dx.shape)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ran (5, 2, 4) (5, 2, 3)" in done.stdout


def test_the_cell_registry_agrees_with_the_core():
    core = _core.cells()
    assert set(_cells.CELLS) == set(core)
    for name, kind in _cells.CELLS.items():
        assert kind.gates == core[name]["gates"], name
        assert kind.cell_state == core[name]["cell_state"], name
        assert ",".join(kind.gate_names) == core[name]["gate_names"], name
        assert kind.projection == core[name]["projection"], name


def test_the_registry_maps_torch_modules_to_the_cores_cells():
    torch = pytest.importorskip("torch")
    for module, want in [
        (torch.nn.RNN(2, 3), "rnn_tanh"),
        (torch.nn.RNN(2, 3, nonlinearity="relu"), "rnn_relu"),
        (torch.nn.LSTM(2, 3), "lstm"),
        (torch.nn.GRU(2, 3), "gru"),
    ]:
        assert _cells.of_torch_mode(module.mode).name == want
        assert module.weight_ih_l0.shape[0] == _cells.CELLS[want].gates * 3
    assert _cells.of_torch_mode("GRU", linear_before_reset=False).name == "gru_reset_before"
    with pytest.raises(ValueError, match="mode: expected one of"):
        _cells.of_torch_mode("TRANSFORMER")
