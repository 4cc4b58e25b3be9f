"""Malformed and hostile ONNX models and Keras weight lists: each is refused with a ValueError or
TypeError naming the node, input, attribute or array, before anything in proportion to the
sizes it claims is allocated."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rnnfast.onnx.backend as backend  # noqa: E402
from rnnfast import keras as rkeras  # noqa: E402

H, IN, T, B = 4, 3, 5, 2


def _model(
    op="LSTM",
    inputs=("X", "W", "R", "B"),
    inits=None,
    attrs=None,
    graph_inputs=("X",),
    outputs=("Y",),
    extra_nodes=(),
):
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    rng = np.random.default_rng(0)
    arrays = {
        "W": rng.uniform(-1, 1, (1, gates * H, IN)).astype(np.float32),
        "R": rng.uniform(-1, 1, (1, gates * H, H)).astype(np.float32),
        "B": np.zeros((1, 2 * gates * H), np.float32),
    }
    arrays.update(inits or {})
    node = helper.make_node(
        op,
        list(inputs),
        ["Y", "Y_h"],
        name="rec",
        **({"hidden_size": H} if attrs is None else attrs),
    )
    vi = {
        "X": helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, IN]),
        "S": helper.make_tensor_value_info("S", TensorProto.FLOAT, [B]),
        "H0": helper.make_tensor_value_info("H0", TensorProto.FLOAT, None),
    }
    graph = helper.make_graph(
        [node, *extra_nodes],
        "g",
        [vi[n] for n in graph_inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in arrays.items() if a is not None],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


X = np.zeros((T, B, IN), np.float32)


def _refused(model, feeds=None):
    with pytest.raises((ValueError, TypeError)) as info:
        backend.prepare(model).run(feeds if feeds is not None else {"X": X})
    assert not isinstance(info.value, (KeyError, IndexError, AttributeError))
    return str(info.value)


@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer reserves terabytes of address space: RLIMIT_AS cannot be lowered",
)
def test_a_hidden_size_far_beyond_the_weights_costs_nothing():
    """A 600-byte model claiming hidden_size 2^31 is refused before any module is built (it
    allocated 192 GiB, and 2.9 GB for 8000, before)."""
    code = textwrap.dedent(
        """
        import resource, sys
        import numpy as np, onnx
        from onnx import TensorProto, helper, numpy_helper
        import rnnfast.onnx.backend as backend
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
        for hidden in (8000, 2**31):
            w = numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "W")
            r = numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "R")
            node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=hidden)
            graph = helper.make_graph(
                [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 2, 3])],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [w, r])
            model = helper.make_model(graph)
            assert len(model.SerializeToString()) < 1000
            try:
                backend.prepare(model)
            except ValueError as e:
                assert "hidden_size" in str(e), e
            else:
                sys.exit("accepted")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2 * 2**20  # KiB: < 2 GiB


def test_missing_weights_inputs_and_outputs_are_named():
    assert "W and R" in _refused(_model(inputs=("X", "W")))
    assert "W and R" in _refused(_model(inputs=("X", "", "R")))
    msg = _refused(_model(inputs=("X", "W", "R", "nowhere")))
    assert "'nowhere'" in msg and "'rec'" in msg
    assert "'missing_out'" in _refused(_model(outputs=("Y", "missing_out")))
    # An input the graph declares but the caller never feeds.
    model = _model(inputs=("X", "W", "R", "B", "", "H0"), graph_inputs=("X", "H0"))
    assert "H0" in _refused(model, {"X": X})


@pytest.mark.parametrize(
    ("inits", "words"),
    [
        ({"W": np.zeros((16, IN), np.float32)}, "input W: expected 3 dimensions"),
        ({"R": np.zeros((16, H), np.float32)}, "input R: expected 3 dimensions"),
        ({"W": np.zeros((2, 16, IN), np.float32)}, "input W: expected shape (1, 16, 3)"),
        ({"B": np.zeros((2, 32), np.float32)}, "input B: expected shape (1, 32)"),
        ({"B": np.zeros((1, 30), np.float32)}, "input B: expected shape (1, 32)"),
        ({"R": np.zeros((1, 16, H), np.float64)}, "input R: expected float32"),
    ],
)
def test_weights_that_disagree_are_named(inits, words):
    assert words in _refused(_model(inits=inits))


def test_one_direction_of_weights_on_a_bidirectional_node():
    msg = _refused(_model(attrs={"hidden_size": H, "direction": "bidirectional"}))
    assert "2 direction(s)" in msg


@pytest.mark.parametrize("layout", [7, -1])
def test_unknown_layout(layout):
    assert "'layout'" in _refused(_model(attrs={"hidden_size": H, "layout": layout}))


def test_states_and_lengths_of_the_wrong_batch_or_type():
    model = _model(inputs=("X", "W", "R", "B", "", "H0"), graph_inputs=("X", "H0"))
    msg = _refused(model, {"X": X, "H0": np.zeros((1, B + 1, H), np.float32)})
    assert "initial_h" in msg and f"(1, {B}, {H})" in msg
    model = _model(inputs=("X", "W", "R", "B", "S"), graph_inputs=("X", "S"))
    assert "sequence_lens" in _refused(model, {"X": X, "S": np.array([5, 2, 3], np.int32)})
    msg = _refused(model, {"X": X, "S": np.array([2.5, 1.0], np.float32)})
    assert "sequence_lens: expected integers" in msg
    msg = _refused(model, {"X": np.zeros((T, B, IN + 1), np.float32), "S": np.array([5, 2])})
    assert "input X" in msg


def test_shape_nodes_with_bad_attributes_are_named():
    concat = helper.make_node("Concat", ["Y", "Y"], ["Z"], name="cat")
    msg = _refused(_model(extra_nodes=[concat], outputs=("Z",)))
    assert "'cat' (Concat)" in msg and "'axis'" in msg
    cast = helper.make_node("Cast", ["Y"], ["Z"], name="cast", to=999)
    msg = _refused(_model(extra_nodes=[cast], outputs=("Z",)))
    assert "'cast' (Cast)" in msg
    unknown = helper.make_node("MatMul", ["Y", "Y"], ["Z"], name="mm")
    with pytest.raises(ValueError, match="MatMul"):
        backend.prepare(_model(extra_nodes=[unknown], outputs=("Z",)))


# Keras: from_weights takes the arrays of layer.get_weights().
K = 4 * H  # an LSTM's gate columns


@pytest.mark.parametrize(
    ("weights", "kw", "words"),
    [
        ([np.float32(1), np.zeros((H, K))], {}, "kernel"),
        ([None, np.zeros((H, K))], {}, "kernel: expected an array"),
        ([np.zeros((IN, K)), None], {}, "recurrent_kernel: expected an array"),
        ([np.zeros((IN, K)), np.zeros((H, K)), np.zeros((2, K))], {}, "bias: expected (16,)"),
        (
            [np.zeros((IN, K)), np.zeros((H, K))],
            {"backward_weights": [np.zeros((IN, K))]},
            "got 1 arrays",
        ),
        (
            [np.zeros((IN, K)), np.zeros((H, K))],
            {"backward_weights": [np.zeros((IN, K)), np.zeros((H, K)), np.zeros(K)]},
            "backward_weights",
        ),
        ([np.zeros((IN, K)), np.zeros((H, K))], {"backward_weights": "abc"}, "backward_weights"),
        ([np.zeros((IN, 3 * H)), np.zeros((H, K))], {}, "kernel"),
    ],
)
def test_keras_weights_that_do_not_fit_are_named(weights, kw, words):
    with pytest.raises((ValueError, TypeError)) as info:
        rkeras.from_weights("LSTM", weights, **kw)
    assert words in str(info.value)


def test_keras_gru_biases_follow_reset_after():
    g = 3 * H
    kernel, rec = np.zeros((IN, g), np.float32), np.zeros((H, g), np.float32)
    rkeras.from_weights("GRU", [kernel, rec, np.zeros((2, g), np.float32)], reset_after=True)
    rkeras.from_weights("GRU", [kernel, rec, np.zeros(g, np.float32)], reset_after=False)
    with pytest.raises(ValueError, match="reset_after"):
        rkeras.from_weights("GRU", [kernel, rec, np.zeros(g, np.float32)], reset_after=True)
