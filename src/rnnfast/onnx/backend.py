"""An ONNX backend (`onnx.backend.base.Backend`) that runs graphs of RNN, GRU and LSTM nodes on
rnnfast, with the shape nodes exporters put between them (Transpose, Reshape, Squeeze,
Unsqueeze, Concat, Slice, Gather, Shape, Identity, Cast, Constant):

    import rnnfast.onnx.backend as backend
    rep = backend.prepare(onnx.load("model.onnx"), device="CPU")
    outputs = rep.run([x])

Recurrent nodes whose weights are initializers, or computed from initializers alone by shape
operators (torch's dynamo exporter slices and concatenates them), become rnnfast modules once, at
prepare; those weight computations are done then and never again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from ._fold import constant_values, weight_names
from ._nodes import SHAPE_OPS, build_module, run_recurrent, run_shape_op
from ._weights import UnsupportedError

RECURRENT = ("RNN", "GRU", "LSTM")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _where(node: onnx.NodeProto) -> str:
    """How errors name a node: its name (or first output) and operator."""
    name = node.name or (node.output[0] if node.output else "")
    return f"node {name!r} ({node.op_type})"


class RnnfastRep(BackendRep):
    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.graph = graph
        # Initializers, and the weights shape operators make of them alone (folded once here).
        self.constants = constant_values(graph, weight_names(graph))
        self.inputs = [i.name for i in graph.input if i.name not in self.constants]
        self.outputs = [o.name for o in graph.output]
        self.nodes = []
        known = set(self.constants) | {i.name for i in graph.input}
        for node in graph.node:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedError(f"node {node.name!r}: domain {node.domain!r} is not ONNX's")
            if op not in RECURRENT and op not in SHAPE_OPS and op != "Constant":
                raise UnsupportedError(
                    f"node {node.name or node.output[0]!r}: operator {op} is not run by rnnfast "
                    f"(it runs {', '.join(RECURRENT)} and the shape operators between them)"
                )
            for name in node.input:
                if name and name not in known:
                    raise ValueError(
                        f"{_where(node)}: input {name!r} is neither a graph input, an "
                        "initializer nor an earlier node's output"
                    )
            if op in RECURRENT and (len(node.input) < 3 or not node.input[1] or not node.input[2]):
                raise ValueError(f"{_where(node)}: inputs W and R are required")
            known.update(n for n in node.input if n in self.constants)
            if node.output and all(not n or n in self.constants for n in node.output):
                known.update(n for n in node.output if n)
                continue  # folded at prepare
            attrs = _attrs(node)
            module = None
            if op in RECURRENT:
                module = self._constant_module(node, attrs)
            self.nodes.append((node, attrs, module))
            known.update(n for n in node.output if n)
        for name in self.outputs:
            if name not in known:
                raise ValueError(f"graph output {name!r}: no node or input produces it")

    def _constant_module(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> Any:
        """The node's rnnfast module, built now when W, R, B and P are all initializers."""
        names = [*node.input[1:], *[""] * 7]
        weights = [names[0], names[1], names[2], names[6]]  # W, R, B, P
        if any(n and n not in self.constants for n in weights):
            return None  # weights fed at run time: built then
        w, r, b, p = (self.constants.get(n) if n else None for n in weights)
        return build_module(node.op_type, attrs, w, r, b, p, _where(node))

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        values: dict[str, Any] = dict(self.constants)
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(self.inputs) - set(self.constants))
            if unknown:
                raise ValueError(f"inputs: {unknown} are not inputs of the graph ({self.inputs})")
            values.update(inputs)
        else:
            given = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(given) > len(self.inputs):
                raise ValueError(
                    f"inputs: the graph takes {len(self.inputs)} ({self.inputs}), got {len(given)}"
                )
            values.update(zip(self.inputs, given))
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise ValueError(f"inputs: {missing} not given (the graph takes {self.inputs})")
        for node, attrs, module in self.nodes:
            args = [values[n] if n else None for n in node.input]
            if node.op_type == "Constant":
                if "value" not in attrs:
                    raise UnsupportedError(f"{_where(node)}: only the 'value' attribute is run")
                outs = [numpy_helper.to_array(attrs["value"])]
            elif node.op_type in RECURRENT:
                outs = run_recurrent(node.op_type, attrs, args, module, _where(node))
            else:
                outs = run_shape_op(node.op_type, attrs, args, _where(node))
            values.update((name, out) for name, out in zip(node.output, outs) if name)
        return tuple(values[name] for name in self.outputs)


class RnnfastBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> RnnfastRep:
        if not cls.supports_device(device):
            raise ValueError(f"device: rnnfast runs on the CPU, got {device!r}")
        return RnnfastRep(model)

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def run_node(  # type: ignore[override]  # onnx's stub: outputs_info before **kwargs
        cls, node: onnx.NodeProto, inputs: Sequence[Any], device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        if not cls.supports_device(device):
            raise ValueError(f"device: rnnfast runs on the CPU, got {device!r}")
        if node.op_type not in RECURRENT and node.op_type not in SHAPE_OPS:
            raise UnsupportedError(f"{_where(node)}: operator {node.op_type} is not run by rnnfast")
        if node.op_type not in RECURRENT:
            return tuple(run_shape_op(node.op_type, _attrs(node), list(inputs), _where(node)))
        return tuple(run_recurrent(node.op_type, _attrs(node), list(inputs), None, _where(node)))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


prepare = RnnfastBackend.prepare
run_model = RnnfastBackend.run_model
run_node = RnnfastBackend.run_node
supports_device = RnnfastBackend.supports_device

__all__ = ["RnnfastBackend", "RnnfastRep", "prepare", "run_model", "run_node", "supports_device"]
