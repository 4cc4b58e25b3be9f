"""rnnfast.onnx.InferenceSession (the recurrent nodes on rnnfast inside onnxruntime), the folding
of initializer-only weight subgraphs, and to_modules/prepare on what torch's exporters write;
onnxruntime's own session is the oracle."""

from __future__ import annotations

import gc
import itertools
import threading
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_onnx import OPS, _node_model  # noqa: E402

import rnnfast.onnx  # noqa: E402
import rnnfast.onnx.backend as backend  # noqa: E402
from rnnfast.onnx import _session  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _ort(model):
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("direction", "with_seq", "with_state"),
    list(itertools.product(["forward", "reverse", "bidirectional"], [False, True], [False, True])),
)
@pytest.mark.parametrize(
    ("op", "kw"), OPS, ids=["rnn", "rnn_relu", "lstm", "lstm_peepholes", "gru", "gru_lbr"]
)
def test_every_node_variant_gives_onnxruntimes_outputs(op, kw, direction, with_seq, with_state):
    kw = dict(kw)
    peep = kw.pop("peepholes", False)
    if op == "RNN" and "activations" in kw:
        kw = {"activations": kw["activations"][: 2 if direction == "bidirectional" else 1]}
    rng = np.random.default_rng(0)
    model, feeds = _node_model(op, kw, direction, 0, with_seq, with_state, np.float32, rng, peep)
    session = rnnfast.onnx.InferenceSession(model)
    assert len(session.rnnfast_nodes) == 1 and not session.rnnfast_skipped
    _close(session.run(None, feeds), _ort(model).run(None, feeds))


def _torch_word_model(cell: str, dynamo: bool, tmp_path):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    import logging

    class WordModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Weights past the exporter's constant-folding limit, as in real models: it then
            # writes them as Slice/Concat of torch's initializers.
            self.emb = torch.nn.Embedding(50, 200)
            rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.rnn = rnn(200, 200, num_layers=2)
            self.out = torch.nn.Linear(200, 50)

        def forward(self, ids):
            y, _ = self.rnn(self.emb(ids))
            return self.out(y)

    torch.manual_seed(0)
    model = WordModel().eval()
    ids = torch.randint(0, 50, (7, 3))
    path = tmp_path / f"{cell}_{'dynamo' if dynamo else 'legacy'}.onnx"
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(
                    model,
                    (ids,),
                    str(path),
                    dynamo=True,
                    input_names=["ids"],
                    dynamic_shapes={"ids": {0: "T", 1: "B"}},
                )
            else:
                torch.onnx.export(
                    model,
                    (ids,),
                    str(path),
                    dynamo=False,
                    input_names=["ids"],
                    dynamic_axes={"ids": {0: "T", 1: "B"}},
                )
    finally:
        logging.disable(logging.NOTSET)
    return model, path


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo_exporter", "torchscript_exporter"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_torch_exported_word_model_runs_whole(cell, dynamo, tmp_path):
    """Embedding -> 2 x LSTM/GRU -> Linear as torch's exporters write it: onnxruntime runs the
    embedding and the decoder, rnnfast both recurrent nodes; outputs equal onnxruntime's and
    torch's, at batch sizes other than the exported one (the dynamo exporter fixes T in a
    Reshape, so T stays 7)."""
    torch = pytest.importorskip("torch")
    model, path = _torch_word_model(cell, dynamo, tmp_path)
    session = rnnfast.onnx.InferenceSession(str(path))
    assert len(session.rnnfast_nodes) == 2 and not session.rnnfast_skipped
    plain = _ort(str(path))  # (its weights may sit in a .data file beside it)
    assert [i.name for i in session.get_inputs()] == [i.name for i in plain.get_inputs()]
    assert [o.name for o in session.get_outputs()] == [o.name for o in plain.get_outputs()]
    for steps, batch in ((7, 3), (7, 1), (7, 16)):
        ids = np.random.default_rng(batch).integers(0, 50, (steps, batch))
        got = session.run(None, {"ids": ids})
        _close(got, plain.run(None, {"ids": ids}))
        with torch.no_grad():
            want = model(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4)
    name = session.get_outputs()[0].name
    assert len(session.run([name], {"ids": ids})) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_to_modules_takes_the_dynamo_exporters_weights(cell, tmp_path):
    """torch's dynamo exporter hands a 2-layer model's LSTM/GRU nodes weights it slices and
    concatenates from initializers; to_modules folds them and gives torch's layers."""
    torch = pytest.importorskip("torch")
    model, path = _torch_word_model(cell, True, tmp_path)
    graph = onnx.load(str(path)).graph
    recurrent = [n for n in graph.node if n.op_type == cell.upper()]
    inits = {t.name for t in graph.initializer}
    assert any(n.input[1] not in inits for n in recurrent)  # W made by nodes, not stored
    modules = list(rnnfast.onnx.to_modules(str(path)).values())
    assert len(modules) == 2
    ids = torch.randint(0, 50, (7, 3))
    with torch.no_grad():
        x = model.emb(ids)
        want = model.rnn(x)[0].numpy()
    y = x.numpy()
    for module in modules:  # the two layers, one after the other
        y = module(y)[0]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_prepare_folds_weight_subgraphs_once():
    """W, R and B made by Slice/Concat/Unsqueeze/Transpose of initializers, as exporters write
    them: the backend computes them and builds the module at prepare, and runs only the LSTM."""
    rng = np.random.default_rng(0)
    w_ih = rng.uniform(-0.5, 0.5, (16, 3)).astype(np.float32)  # torch's gate order i, f, g, o
    w_hh = rng.uniform(-0.5, 0.5, (16, 4)).astype(np.float32)
    bias = rng.uniform(-0.2, 0.2, (32,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w_ih, "w_ih"),
        numpy_helper.from_array(w_hh, "w_hh"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = []
    for k in range(4):
        lo, hi = f"s{k}", f"e{k}"
        inits += [
            numpy_helper.from_array(np.array([4 * k], np.int64), lo),
            numpy_helper.from_array(np.array([4 * k + 4], np.int64), hi),
        ]
    order = [0, 3, 1, 2]  # ONNX's i, o, f, c from torch's i, f, g, o
    for name in ("w_ih", "w_hh"):
        parts = []
        for k in order:
            nodes.append(helper.make_node("Slice", [name, f"s{k}", f"e{k}"], [f"{name}_{k}"]))
            parts.append(f"{name}_{k}")
        nodes.append(helper.make_node("Concat", parts, [f"{name}_onnx"], axis=0))
        nodes.append(helper.make_node("Unsqueeze", [f"{name}_onnx", "zero"], [f"{name}_3d"]))
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    nodes.append(helper.make_node("Unsqueeze", ["bias", "zero"], ["b_2d"]))
    nodes.append(
        helper.make_node("LSTM", ["X", "w_ih_3d", "w_hh_3d", "b_2d"], ["Y"], hidden_size=4)
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 2, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rep = backend.prepare(model)
    assert [n.op_type for n, _, _ in rep.nodes] == ["LSTM"]  # the rest folded at prepare
    assert rep.nodes[0][2] is not None  # and the module built then
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    want = _ort(model).run(None, {"X": x})
    _close(rep.run([x]), want)
    _close(rnnfast.onnx.InferenceSession(model).run(None, {"X": x}), want)


def _single(op="LSTM", dtype=np.float32, weights_as_inputs=False, **attrs):
    rng = np.random.default_rng(0)
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    w = rng.uniform(-0.5, 0.5, (1, gates * 4, 3)).astype(dtype)
    r = rng.uniform(-0.5, 0.5, (1, gates * 4, 4)).astype(dtype)
    ins = [helper.make_tensor_value_info("X", elem, [5, 2, 3])]
    inits = []
    for name, value in (("W", w), ("R", r)):
        if weights_as_inputs:
            ins.append(helper.make_tensor_value_info(name, elem, list(value.shape)))
        else:
            inits.append(numpy_helper.from_array(value, name))
    node = helper.make_node(op, ["X", "W", "R"], ["Y", "Y_h"], hidden_size=4, **attrs)
    graph = helper.make_graph(
        [node], "g", ins, [helper.make_tensor_value_info("Y", elem, None)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"X": rng.standard_normal((5, 2, 3)).astype(dtype)}
    if weights_as_inputs:
        feeds.update(W=w, R=r)
    return model, feeds


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"weights_as_inputs": True}, "fed at run time"),
        ({"clip": 0.5}, "clip"),
        ({"op": "RNN", "activations": ["Sigmoid"]}, "Sigmoid"),
    ],
)
def test_nodes_rnnfast_does_not_run_stay_onnxruntimes_and_say_why(kwargs, reason):
    model, feeds = _single(**kwargs)
    session = rnnfast.onnx.InferenceSession(model)
    assert not session.rnnfast_nodes
    assert len(session.rnnfast_skipped) == 1
    assert reason in next(iter(session.rnnfast_skipped.values()))
    _close(session.run(None, feeds), _ort(model).run(None, feeds))


def test_float64_nodes_which_onnxruntime_cannot_run_run_on_rnnfast():
    model, feeds = _single(dtype=np.float64)
    with pytest.raises(Exception, match="double"):
        _ort(model).run(None, feeds)  # onnxruntime's LSTM is float32 only
    session = rnnfast.onnx.InferenceSession(model)
    assert len(session.rnnfast_nodes) == 1
    (got,) = session.run(None, feeds)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, backend.prepare(model).run(feeds)[0], rtol=1e-12)


def test_the_callers_session_options_are_left_as_they_were():
    model, feeds = _single()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    session = rnnfast.onnx.InferenceSession(model, options)
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    _close(session.run(None, feeds), _ort(model).run(None, feeds))
    with pytest.raises(TypeError, match=r"sess_options: expected an onnxruntime\.SessionOptions"):
        rnnfast.onnx.InferenceSession(model, {"threads": 1})


def test_a_session_runs_from_several_threads_at_once():
    model, feeds = _single()
    session = rnnfast.onnx.InferenceSession(model)
    want = _ort(model).run(None, feeds)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(session.run(None, feeds))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 80
    for got in results:
        np.testing.assert_array_equal(got[0], results[0][0])
    _close(results[0], want)


def test_modules_live_as_long_as_their_session(capfd):
    model, feeds = _single()
    session = rnnfast.onnx.InferenceSession(model)
    keys = list(session._kernels)
    assert all(k in _session._kernels for k in keys)
    rewritten, _, _ = _session.rewrite(model, _session._Errors())  # run by another session
    del session
    gc.collect()
    assert not any(k in _session._kernels for k in keys)
    from onnxruntime_extensions import get_library_path

    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    stray = ort.InferenceSession(rewritten.SerializeToString(), options)
    try:  # no module behind the node: no crash, a message, and no numbers
        outputs = stray.run(None, feeds)
    except Exception:  # onnxruntime refusing the empty outputs is as good
        outputs = None
    assert outputs is None or outputs[0].size == 0
    assert "runs only inside the session that rewrote it" in capfd.readouterr().err


def _lstm_with_open_shapes():
    """An LSTM node with every input (sequence_lens and states too) and its inputs' shapes left
    open: onnxruntime checks nothing, rnnfast's node does."""
    model, feeds = _node_model(
        "LSTM", {}, "forward", 0, True, True, np.float32, np.random.default_rng(0)
    )
    for graph_input in model.graph.input:
        graph_input.type.tensor_type.ClearField("shape")
    return model, feeds


@pytest.mark.parametrize(
    ("feeds", "error", "message"),
    [
        ({"S": np.array([9, 1, 2], np.int32)}, ValueError, r"sequence_lens: expected values"),
        ({"H0": np.zeros((1, 4, 4), np.float32)}, ValueError, r"initial_h: expected shape"),
    ],
)
def test_an_error_in_an_rnnfast_node_is_raised_by_run_not_a_crash(feeds, error, message):
    """onnxruntime does not check a custom operator's inputs against the node's attributes, so
    rnnfast does; onnxruntime-extensions would end the process on an exception, so the session
    raises it when onnxruntime returns, and the session goes on working."""
    model, good = _lstm_with_open_shapes()
    session = rnnfast.onnx.InferenceSession(model)
    with pytest.raises(error, match=message):
        session.run(None, {**good, **feeds})
    _close(session.run(None, good), _ort(model).run(None, good))


def test_nodes_run_small_calls_alone_and_leave_the_setting_as_it_was():
    """A session's node asks rnnfast to run its small calls on the calling thread alone
    (onnxruntime's threads use the other cores between nodes: runtime/threads.h
    set_small_calls_alone), during the node only, also when the node fails."""
    from rnnfast import _core

    model, feeds = _lstm_with_open_shapes()
    session = rnnfast.onnx.InferenceSession(model)
    seen = []
    kernel = next(iter(session._kernels.values()))
    module = kernel.module
    forward = module.forward

    def spy(*args, **kwargs):
        seen.append(_core.set_small_calls_alone(True))
        return forward(*args, **kwargs)

    module.forward = spy
    try:
        for previous in (False, True):
            _core.set_small_calls_alone(previous)
            _close(session.run(None, feeds), _ort(model).run(None, feeds))
            assert _core.set_small_calls_alone(False) is previous
        with pytest.raises(ValueError, match="sequence_lens: expected values"):
            session.run(None, {**feeds, "S": np.array([9, 1, 2], np.int32)})
        assert _core.set_small_calls_alone(False) is False
    finally:
        module.forward = forward
    assert seen == [True, True]


def test_other_python_operators_keep_working():
    """The extension's callback is wrapped for rnnfast's operator only: a user's own Python
    operator (whose outputs the stock callback turns into lists) still runs."""
    from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op

    rnnfast.onnx.InferenceSession(_single()[0])  # registers rnnfast's operator and callback

    @onnx_op(op_type="RnnfastTestTwice", inputs=[PyCustomOpDef.dt_float])
    def twice(x):
        return x * 2

    node = helper.make_node("RnnfastTestTwice", ["x"], ["y"], domain="ai.onnx.contrib")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)],
    )
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    s = ort.InferenceSession(model.SerializeToString(), options)
    x = np.array([1.0, -2.0, 3.5], np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], 2 * x)


def test_bad_input_gets_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="path_or_bytes: expected a path, bytes"):
        rnnfast.onnx.InferenceSession(3.5)
    with pytest.raises(FileNotFoundError):
        rnnfast.onnx.InferenceSession(str(tmp_path / "missing.onnx"))
    model, feeds = _single()
    session = rnnfast.onnx.InferenceSession(model.SerializeToString())
    with pytest.raises(Exception, match="X"):
        session.run(None, {"X": np.zeros((5, 2, 7), np.float32)})
    _close(session.run(None, feeds), _ort(model).run(None, feeds))  # still works after


def test_values_read_only_inside_subgraphs_are_kept():
    """An If node's branches read the outer graph's values by name: pruning the rewritten
    model must keep the nodes and initializers they read."""
    model, feeds = _single()
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([2.0], np.float32), "two"))
    graph.initializer.append(numpy_helper.from_array(np.array([0.5], np.float32), "half"))
    graph.node.append(helper.make_node("Mul", ["Y", "two"], ["Y2"]))
    out = helper.make_tensor_value_info("branch", TensorProto.FLOAT, None)
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["Y2"], ["branch"])], "then", [], [out]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Add", ["Y2", "half"], ["branch"])], "else", [], [out]
    )
    graph.node.append(
        helper.make_node("If", ["flag"], ["Z"], then_branch=then_branch, else_branch=else_branch)
    )
    graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, None))
    session = rnnfast.onnx.InferenceSession(model)
    assert len(session.rnnfast_nodes) == 1
    for flag in (True, False):
        run = {**feeds, "flag": np.array(flag)}
        _close(session.run(None, run), _ort(model).run(None, run))


def test_every_way_to_run_reports_an_rnnfast_nodes_error():
    """run_with_ort_values and IO binding go through the same check as run: a failed node's
    error is raised, never its empty outputs returned."""
    model, good = _node_model(
        "LSTM", {}, "forward", 0, True, False, np.float32, np.random.default_rng(0)
    )
    for graph_input in model.graph.input:
        graph_input.type.tensor_type.ClearField("shape")
    session = rnnfast.onnx.InferenceSession(model)
    bad = {**good, "S": np.array([9, 1, 2], np.int32)}
    values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in bad.items()}
    with pytest.raises(ValueError, match="sequence_lens"):
        session.run_with_ort_values(None, values)
    binding = session.io_binding()
    for k, v in bad.items():
        binding.bind_cpu_input(k, v)
    for o in session.get_outputs():
        binding.bind_output(o.name)
    with pytest.raises(ValueError, match="sequence_lens"):
        session.run_with_iobinding(binding)
    good_values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in good.items()}
    got = [v.numpy() for v in session.run_with_ort_values(None, good_values)]
    _close(got, _ort(model).run(None, good))
    done = threading.Event()
    seen = {}

    def callback(outputs, data, err):
        seen.update(outputs=outputs, err=err)
        done.set()

    session.run_async(None, bad, callback, None)
    assert done.wait(60)
    assert seen["outputs"] is None and "sequence_lens" in seen["err"]
