"""A patched model through torch's tracers and exporters: torch.jit.trace, torch.onnx.export
(the TorchScript exporter and the dynamo one) and torch.jit.script see torch's own modules with
the same Parameters (rnnfast.torch's `torch_twin`), so they record standard operators (aten::lstm,
ONNX's LSTM/GRU/RNN nodes) that onnxruntime runs with the unpatched model's outputs."""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")

pytestmark = pytest.mark.filterwarnings("ignore")

CELLS = {
    "lstm": lambda: torch.nn.LSTM(8, 16, 2),
    "gru": lambda: torch.nn.GRU(8, 16, 2, bidirectional=True),
    "rnn_tanh": lambda: torch.nn.RNN(8, 16),
}


class LanguageModel(torch.nn.Module):
    """The word-level language model's shape: embedding -> recurrent stack -> decoder."""

    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.rnn = rnn
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.out = torch.nn.Linear(width, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.emb(ids))
        return self.out(y)


def _pair(cell: str):
    torch.manual_seed(0)
    native = LanguageModel(CELLS[cell]())
    patched = rt.patch(copy.deepcopy(native))
    assert type(patched.rnn).__module__.startswith("rnnfast")
    return native, patched


IDS = torch.randint(0, 20, (7, 3), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cell", list(CELLS))
def test_trace_records_torch_operators(cell):
    native, patched = _pair(cell)
    with torch.no_grad():
        traced = torch.jit.trace(patched, (IDS,))
        want = native(IDS)
        torch.testing.assert_close(traced(IDS), want, rtol=1e-5, atol=1e-6)
    assert f"aten::{cell.split('_')[0]}" in str(traced.inlined_graph)
    # The patched model is untouched and still runs on rnnfast.
    assert type(patched.rnn).__module__.startswith("rnnfast")
    with torch.no_grad():
        torch.testing.assert_close(patched(IDS), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_exporter", "dynamo_exporter"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_onnx_export_runs_in_onnxruntime(cell, dynamo, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    native, patched = _pair(cell)
    path = tmp_path / "model.onnx"
    logging.disable(logging.WARNING)  # the dynamo exporter's progress lines
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(patched, (IDS,), str(path), dynamo=dynamo, input_names=["ids"])
    finally:
        logging.disable(logging.NOTSET)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if not (dynamo and cell == "rnn_tanh"):  # (torch's dynamo exporter unrolls an Elman RNN)
        assert cell.split("_")[0].upper() in ops, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: IDS.numpy()})[0]
    with torch.no_grad():
        want = native(IDS).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_script_compiles_what_torch_would():
    """torch.jit.script gets torch's own module (same Parameter objects), so the result is what
    scripting torch.nn.LSTM gives, whatever that is in this torch release."""
    _, patched = _pair("lstm")
    twin = patched.rnn.__prepare_scriptable__()
    assert type(twin) is torch.nn.LSTM
    assert all(a is b for a, b in zip(twin.parameters(), patched.rnn.parameters()))
    assert type(patched.rnn).__module__.startswith("rnnfast")


def test_a_gru_torch_cannot_compute_is_refused_when_traced():
    m = rt.GRU(8, 16, linear_before_reset=False)
    with pytest.raises(RuntimeError, match="linear_before_reset=False"):
        torch.jit.trace(m, (torch.randn(5, 2, 8),))


def test_a_saved_patched_module_loads_with_torch_defaults(tmp_path):
    """torch.save then torch.load (weights_only=True, torch's default) gives the patched module
    back; in a whole model torch's own classes need torch's allowlist as they always do."""
    torch.manual_seed(0)
    m = rt.LSTM(8, 16, 2)
    path = tmp_path / "lstm.pt"
    torch.save(m, path)
    back = torch.load(path)
    assert type(back) is rt.LSTM
    x = torch.randn(5, 2, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], m(x)[0], rtol=0, atol=0)
    _, patched = _pair("gru")
    torch.save(patched, tmp_path / "model.pt")
    with pytest.raises(Exception, match="LanguageModel"):  # torch's message, not rnnfast's
        torch.load(tmp_path / "model.pt")
    allowed = [LanguageModel, torch.nn.Embedding, torch.nn.Linear]
    with torch.serialization.safe_globals(allowed):
        loaded = torch.load(tmp_path / "model.pt")
    assert type(loaded.rnn) is rt.GRU
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS), patched(IDS), rtol=0, atol=0)
