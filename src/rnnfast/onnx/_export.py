"""rnnfast modules to ONNX models and back."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._recurrent import RecurrentBase
from ._fold import constant_values, weight_names
from ._nodes import build_module
from ._weights import GATES, UnsupportedError, peepholes_from_onnx, reorder

_OP = {
    "rnn_tanh": "RNN",
    "rnn_relu": "RNN",
    "lstm": "LSTM",
    "gru": "GRU",
    "gru_reset_before": "GRU",
}
_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
OPSET = 17


def _layer_initializers(module: RecurrentBase, layer: int, op: str) -> list[onnx.TensorProto]:
    """W [D, G*H, in], R [D, G*H, H], B [D, 2*G*H] (and P [D, 3H]) of one layer, in ONNX's gate
    order."""
    hidden = module.hidden_size
    ws, rs, bs, ps = [], [], [], []
    for d in range(module.num_directions):
        if module.peepholes:
            ps.append(peepholes_from_onnx(np.asarray(module.peephole_weights(layer, d)), hidden))
        w_ih, w_hh, b_ih, b_hh = module.layer_weights(layer, d)
        ws.append(reorder(op, np.asarray(w_ih), hidden, inverse=True))
        rs.append(reorder(op, np.asarray(w_hh), hidden, inverse=True))
        if module.bias:
            bs.append(
                np.concatenate(
                    [
                        reorder(op, np.asarray(b_ih), hidden, inverse=True),
                        reorder(op, np.asarray(b_hh), hidden, inverse=True),
                    ]
                )
            )
    out = [
        numpy_helper.from_array(np.stack(ws), f"W_l{layer}"),
        numpy_helper.from_array(np.stack(rs), f"R_l{layer}"),
    ]
    if module.bias or module.peepholes:  # B is required before P: zeros without bias
        b = np.stack(bs) if module.bias else np.zeros((len(ws), 2 * ws[0].shape[0]), ws[0].dtype)
        out.append(numpy_helper.from_array(b, f"B_l{layer}"))
    if module.peepholes:
        out.append(numpy_helper.from_array(np.stack(ps), f"P_l{layer}"))
    return out


def export(
    module: RecurrentBase, path: str | os.PathLike, *, opset: int = OPSET
) -> onnx.ModelProto:
    """Writes `module` as an ONNX model: input "x" as the module takes it ((T, B, I), or
    (B, T, I) with batch_first), outputs "y", "h_n" (and "c_n") as it returns them. One node per
    layer (both directions in it), chained by Transpose + Reshape. Returns the model."""
    if not isinstance(module, RecurrentBase):
        raise TypeError(
            f"module: expected an rnnfast recurrent module, got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise UnsupportedError("proj_size: ONNX's LSTM has no projection")
    op, lstm = _OP[module.cell], module.cell == "lstm"
    elem = _ELEM[module.dtype]
    dirs, hidden = module.num_directions, module.hidden_size
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merge_directions")
    ]
    x_shape: list[str | int] = (
        ["B", "T", module.input_size] if module.batch_first else ["T", "B", module.input_size]
    )
    current = "x"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]))
        current = "x_tm"
    h_parts, c_parts = [], []
    for layer in range(module.num_layers):
        inits += _layer_initializers(module, layer, op)
        ins = [current, f"W_l{layer}", f"R_l{layer}"]
        if module.bias or module.peepholes:
            ins.append(f"B_l{layer}")
        if module.peepholes:
            ins += ["", "", "", f"P_l{layer}"]
        outs = [f"Y_l{layer}", f"Yh_l{layer}"] + ([f"Yc_l{layer}"] if lstm else [])
        attrs: dict[str, Any] = {"hidden_size": hidden}
        if dirs == 2:
            attrs["direction"] = "bidirectional"
        if module.cell == "rnn_relu":
            attrs["activations"] = ["Relu"] * dirs
        if op == "GRU":
            attrs["linear_before_reset"] = int(module.cell == "gru")
        nodes.append(helper.make_node(op, ins, outs, name=f"{op.lower()}_l{layer}", **attrs))
        # Y [T, D, B, H] -> [T, B, D*H]: the next layer's input, as rnnfast and torch stack it.
        nodes.append(helper.make_node("Transpose", [outs[0]], [f"Yt_l{layer}"], perm=[0, 2, 1, 3]))
        current = f"y_l{layer}"
        nodes.append(helper.make_node("Reshape", [f"Yt_l{layer}", "merge_directions"], [current]))
        h_parts.append(outs[1])
        if lstm:
            c_parts.append(outs[2])
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", [current], ["y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"]))
    nodes.append(helper.make_node("Concat", h_parts, ["h_n"], axis=0))
    outputs = [
        helper.make_tensor_value_info("y", elem, [*x_shape[:2], dirs * hidden]),
        helper.make_tensor_value_info("h_n", elem, [module.num_layers * dirs, "B", hidden]),
    ]
    if lstm:
        nodes.append(helper.make_node("Concat", c_parts, ["c_n"], axis=0))
        outputs.append(
            helper.make_tensor_value_info("c_n", elem, [module.num_layers * dirs, "B", hidden])
        )
    graph = helper.make_graph(
        nodes,
        f"rnnfast_{module.cell}",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        outputs,
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="rnnfast"
    )
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return model


def to_modules(model: onnx.ModelProto | str | os.PathLike) -> dict[str, RecurrentBase]:
    """Every RNN, GRU and LSTM node of `model` whose weights are initializers (or made of
    initializers alone by shape operators, as torch's dynamo exporter writes them), as an rnnfast
    module (one layer; gate orders and W/R/B mapped), keyed by the node's name (or its first
    output's). A reverse-only node, peepholes, clip and other activations are refused."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    consts = constant_values(model.graph, weight_names(model.graph))
    out = {}
    for node in model.graph.node:
        if node.op_type not in GATES:
            continue
        name = node.name or node.output[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        direction = attrs.get("direction", b"forward")
        if (direction.decode() if isinstance(direction, bytes) else direction) == "reverse":
            raise UnsupportedError(
                f"{name}: direction 'reverse' alone has no rnnfast module (the backend runs it)"
            )
        missing = [n for n in node.input[1:3] if n not in consts]
        if missing:
            raise ValueError(
                f"{name}: weights {missing} are neither initializers of the model nor made of "
                "initializers alone"
            )
        b = consts.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        p = consts.get(node.input[7]) if len(node.input) > 7 and node.input[7] else None
        w, r = consts[node.input[1]], consts[node.input[2]]
        module = build_module(node.op_type, attrs, w, r, b, p, f"node {name!r} ({node.op_type})")
        del module.onnx_direction
        out[name] = module
    return out
