"""ONNX's RNN, GRU and LSTM operators in rnnfast's terms: gate orders, W/R/B split, attributes.

ONNX stacks LSTM gates i, o, f, c and GRU gates z, r, h, with W [D, G*H, I], R [D, G*H, H] and
B [D, 2*G*H] (input then recurrent biases); rnnfast (as PyTorch) stacks LSTM gates i, f, g, o and
GRU gates r, z, n, with one weight_ih/weight_hh/bias_ih/bias_hh per direction. ONNX's GRU
default (linear_before_reset = 0) is the original GRU, rnnfast's `linear_before_reset=False`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._cells import GATES_OF_ONNX as GATES
from .._cells import ONNX_TO_RNNFAST as TO_RNNFAST

DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


class UnsupportedError(ValueError):
    """An ONNX attribute or input rnnfast cannot compute exactly."""


def reorder(op: str, w: np.ndarray, hidden: int, inverse: bool = False) -> np.ndarray:
    """Rows of gate blocks (first axis G*H) from ONNX's order to rnnfast's (or back)."""
    order = TO_RNNFAST[op]
    if inverse:
        order = list(np.argsort(order))
    blocks = [w[g * hidden : (g + 1) * hidden] for g in range(GATES[op])]
    return np.concatenate([blocks[g] for g in order], axis=0)


def cell_of(op: str, attrs: dict[str, Any], directions: int) -> tuple[str, dict[str, Any]]:
    """rnnfast's class name and keywords for an ONNX node's attributes, refusing the ones whose
    result rnnfast cannot give exactly (naming them)."""
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise UnsupportedError(f"{op} attribute {name!r}: not supported by rnnfast")
    if attrs.get("input_forget", 0):
        raise UnsupportedError(f"{op} attribute 'input_forget': not supported by rnnfast")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if op == "RNN":
        kinds = set(acts or ["Tanh"])
        if len(kinds) != 1 or not kinds <= {"Tanh", "Relu"}:
            raise UnsupportedError(
                f"RNN attribute 'activations' {acts}: rnnfast runs Tanh or Relu (the same for "
                "both directions)"
            )
        return "RNN", {"nonlinearity": kinds.pop().lower()}
    if acts and acts != DEFAULT_ACTIVATIONS[op] * directions:
        raise UnsupportedError(
            f"{op} attribute 'activations' {acts}: rnnfast runs the default "
            f"{DEFAULT_ACTIVATIONS[op]} only"
        )
    if op == "GRU":
        return "GRU", {"linear_before_reset": bool(attrs.get("linear_before_reset", 0))}
    return "LSTM", {}


def peepholes_from_onnx(p: np.ndarray, hidden: int) -> np.ndarray:
    """ONNX's P (p_i, p_o, p_f) as rnnfast's weight_p (p_i, p_f, p_o); the inverse is itself."""
    return np.concatenate([p[:hidden], p[2 * hidden :], p[hidden : 2 * hidden]])


def state_dict(
    op: str,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None,
    hidden: int,
    p: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """PyTorch-named parameters of one layer (directions 0 and 1) from W, R, B (and P)."""
    out = {}
    gh = GATES[op] * hidden
    for d in range(w.shape[0]):
        suffix = "_reverse" if d else ""
        out[f"weight_ih_l0{suffix}"] = reorder(op, w[d], hidden)
        out[f"weight_hh_l0{suffix}"] = reorder(op, r[d], hidden)
        bias = np.zeros(2 * gh, w.dtype) if b is None else b[d]
        out[f"bias_ih_l0{suffix}"] = reorder(op, bias[:gh], hidden)
        out[f"bias_hh_l0{suffix}"] = reorder(op, bias[gh:], hidden)
        if p is not None:
            out[f"weight_p_l0{suffix}"] = peepholes_from_onnx(p[d], hidden)
    return out
