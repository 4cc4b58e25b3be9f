"""The constant values of an ONNX graph that recurrent weights are made of.

Exporters do not always hand an RNN/GRU/LSTM node its W, R and B as initializers: torch's dynamo
exporter slices torch's weight_ih/weight_hh into ONNX's gate order and concatenates them again
(Slice, Concat, Unsqueeze of initializers). Such initializer-only subgraphs are evaluated here
once (prepare, to_modules, InferenceSession) instead of on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._nodes import SHAPE_OPS, run_shape_op
from ._weights import GATES

# ONNX inputs of a recurrent node that hold weights: W, R, B and LSTM's P.
WEIGHT_INPUTS = (1, 2, 3, 7)


def weight_names(graph: onnx.GraphProto) -> set[str]:
    """The names every recurrent node reads its weights from."""
    out: set[str] = set()
    for node in graph.node:
        if node.op_type in GATES:
            out.update(node.input[i] for i in WEIGHT_INPUTS if i < len(node.input))
    out.discard("")
    return out


def _where(node: onnx.NodeProto) -> str:
    name = node.name or (node.output[0] if node.output else "")
    return f"node {name!r} ({node.op_type})"


def constant_values(graph: onnx.GraphProto, wanted: set[str]) -> dict[str, np.ndarray]:
    """Initializers, plus every value in `wanted` (and what it is made of) that Constant nodes
    and the shape operators compute from initializers alone. Values a graph input reaches stay
    out; so does anything not on a path to `wanted`."""
    values: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output if out}
    needed: set[str] = set()
    stack = [n for n in wanted if n not in values]
    while stack:  # what the wanted values are made of
        name = stack.pop()
        node = producer.get(name)
        if node is None or name in needed:
            continue
        needed.add(name)
        stack.extend(i for i in node.input if i and i not in values)
    for node in graph.node:  # ONNX lists nodes in a topological order
        if not any(out in needed for out in node.output):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant" and "value" in attrs:
            outs = [numpy_helper.to_array(attrs["value"])]
        elif node.op_type in SHAPE_OPS and node.domain in ("", "ai.onnx"):
            if not all(i == "" or i in values for i in node.input):
                continue  # reached by a graph input: a run-time value
            args = [values[i] if i else None for i in node.input]
            outs = run_shape_op(node.op_type, attrs, args, _where(node))
        else:
            continue
        values.update((name, np.asarray(v)) for name, v in zip(node.output, outs) if name)
    return values


__all__ = ["WEIGHT_INPUTS", "constant_values", "weight_names"]
