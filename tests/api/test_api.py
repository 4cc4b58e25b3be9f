"""The PyTorch-style API: parameters, gradients, state dicts, the tape, the extension's stub."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import rnnfast
from rnnfast import _core


def test_parameter_names_shapes_and_default_init():
    m = rnnfast.GRU(5, 4, num_layers=2, bidirectional=True, seed=0)
    assert list(m.params) == [
        f"{kind}_l{layer}{suffix}"
        for layer in (0, 1)
        for suffix in ("", "_reverse")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    assert m.params["weight_ih_l0"].shape == (12, 5)
    assert m.params["weight_ih_l1_reverse"].shape == (12, 8)
    assert m.params["bias_hh_l1"].shape == (12,)
    for p in m.params.values():
        assert p.dtype == np.float32
        assert np.abs(p).max() <= 0.5  # 1/sqrt(4)
    assert set(rnnfast.LSTM(3, 2, bias=False).params) == {"weight_ih_l0", "weight_hh_l0"}


def test_seed_makes_init_reproducible():
    a, b, c = (rnnfast.LSTM(3, 4, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["weight_ih_l0"], c.params["weight_ih_l0"])


def test_state_dict_round_trip_and_copies():
    a = rnnfast.RNN(3, 4, num_layers=2, nonlinearity="relu", seed=1)
    b = rnnfast.RNN(3, 4, num_layers=2, nonlinearity="relu", seed=2)
    sd = a.state_dict()
    b.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    sd["weight_ih_l0"][:] = 0  # the dict holds copies
    assert not np.all(a.params["weight_ih_l0"] == 0)


def test_grads_accumulate_until_zero_grad():
    m = rnnfast.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    dy = np.ones((4, 2, 4), np.float32)
    _, _, tape = m.forward(x)
    m.backward(tape, dy)
    once = {k: g.copy() for k, g in m.grads.items()}
    _, _, tape = m.forward(x)
    m.backward(tape, dy)
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-6)
    m.zero_grad()
    assert all(not g.any() for g in m.grads.values())


def test_dy_and_dstate_default_to_zeros():
    m = rnnfast.GRU(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    _, _, tape = m.forward(x)
    dx, dh0 = m.backward(tape)
    assert not dx.any() and not dh0.any()
    assert not any(g.any() for g in m.grads.values())


def test_call_is_inference_and_batch_first_transposes():
    m = rnnfast.LSTM(3, 4, batch_first=True, seed=0)
    mt = rnnfast.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    y, (h, c) = m(x)
    yt, (ht, ct) = mt(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(y, yt.transpose(1, 0, 2))
    np.testing.assert_array_equal(h, ht)
    np.testing.assert_array_equal(c, ct)
    assert y.flags.c_contiguous


def test_tape_bytes_matches_what_the_tape_holds():
    for m in (
        rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True),
        rnnfast.GRU(5, 6),
        rnnfast.RNN(2, 3, dtype=np.float64),
    ):
        x = np.zeros((7, 3, m.input_size), m.dtype)
        _, _, tape = m.forward(x)
        assert tape.nbytes == m.tape_bytes(7, 3)


def test_threads_setting_round_trips(threads):
    threads(2)
    assert rnnfast.get_num_threads() == 2
    cfg = rnnfast.show_config()
    assert cfg["num_threads"] == 2 and cfg["openmp"] is True


def _binding_args(obj) -> list[str]:
    # pybind11 puts the signature on the docstring's first line: name(a: t, b: t) -> r
    sig = obj.__doc__.splitlines()[0]
    return re.findall(r"(\w+):", sig[sig.index("(") : sig.rindex(")")])


def _stub_args(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in (*node.args.args, *node.args.kwonlyargs)]


def test_stub_matches_the_binding():
    """_core.pyi names every function, class and constant of the extension, with the same
    arguments (methods included)."""
    tree = ast.parse((Path(rnnfast.__file__).parent / "_core.pyi").read_text())
    stub_funcs = {n.name: _stub_args(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    stub_classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    stub_names = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    for name in (n for n in dir(_core) if not n.startswith("_")):
        obj = getattr(_core, name)
        if isinstance(obj, type):
            assert name in stub_classes, f"_core.pyi lacks the class {name}"
            methods = {m.name: m for m in stub_classes[name].body if isinstance(m, ast.FunctionDef)}
            for attr in (a for a in vars(obj) if not a.startswith("_") or a == "__init__"):
                member = getattr(obj, attr)
                if isinstance(member, property):
                    assert attr in methods, f"_core.pyi lacks {name}.{attr}"
                    continue
                if not callable(member) or not (member.__doc__ or "").startswith(f"{attr}("):
                    continue  # not a pybind11 function (a class without a constructor, say)
                assert attr in methods, f"_core.pyi lacks {name}.{attr}"
                # the binding names `self` too; the stub's `self` is its first argument
                assert _binding_args(member) == _stub_args(methods[attr]), f"{name}.{attr}"
            continue
        if not callable(obj):
            assert name in stub_names, f"_core.pyi lacks the constant {name}"
            continue
        assert name in stub_funcs, f"_core.pyi lacks the function {name}"
        args = _binding_args(obj)
        assert args == stub_funcs[name], f"{name}: binding {args}, stub {stub_funcs[name]}"


def test_reference_has_the_same_signatures():
    from rnnfast import reference

    for name in ("RNN", "LSTM", "GRU"):
        fast, ref = getattr(rnnfast, name), getattr(reference, name)
        assert inspect.signature(fast.__init__) == inspect.signature(ref.__init__)
        for meth in ("forward", "backward", "__call__"):
            assert inspect.signature(getattr(fast, meth)) == inspect.signature(getattr(ref, meth))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_rnn_with_huge_inputs_stays_finite_in_sigmoid(dtype):
    m = rnnfast.LSTM(2, 2, dtype=dtype, seed=0)
    x = np.full((3, 1, 2), 1e4, dtype)
    y, _ = m(x)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_input_grad_false_skips_dx_and_changes_nothing_else(engine):
    from rnnfast import reference

    mod = rnnfast if engine == "fast" else reference
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    dy = np.random.default_rng(1).standard_normal((5, 3, 12))
    results = []
    for input_grad in (True, False):
        m = mod.LSTM(4, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
        _, _, tape = m.forward(x, lengths=[5, 2, 4])
        dx, (dh0, dc0) = m.backward(tape, dy, input_grad=input_grad)
        assert (dx is None) == (not input_grad)
        results.append([dh0, dc0, *m.grads.values()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
