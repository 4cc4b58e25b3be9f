"""rnnfast as a drop-in for torch.nn.RNN, LSTM and GRU (needs PyTorch; `import rnnfast` does not).

`rnnfast.torch.LSTM(...)` is a `torch.nn.LSTM` in all but class (a torch.nn.RNNBase with the same
constructor, `nn.Parameter`s under the same names, state dicts, `.to(dtype)`, hooks, optimisers;
not a subclass of nn.LSTM, which torch.compile refuses to trace) whose forward runs rnnfast's
C++ engine, batched, unbatched or on a PackedSequence, with autograd (gradients for the input,
the initial state and every parameter; second derivatives from torch's operators run again),
`torch.no_grad()` taking the inference path, dropout in training mode (masks from torch's
generator: `torch.manual_seed` repeats them), `torch.compile` (through custom operators) and
DistributedDataParallel; tracing, exporting and torch.func transforms run torch's own module
with the same Parameters.
`RNNCell`, `LSTMCell` and `GRUCell` do the same for torch's cells (one timestep: one C++ call
forward, one backward). `patch(model)` switches every torch RNN and cell inside a model to
rnnfast in place, keeping its Parameter objects; `unpatch(model)` switches back.

bfloat16 as torch does it: under `torch.autocast("cpu", dtype=torch.bfloat16)` the products run
in bf16 (rnnfast's precision "bf16") and outputs take the dtypes torch.nn gives there; modules and
inputs in torch.bfloat16 run bf16 from float32 copies of the parameters, refreshed every call.
CPU only, float32, float64 and bfloat16; anything else gets an error. Unless rnnfast's
thread count was chosen (`rnnfast.set_num_threads`, OMP_NUM_THREADS), calls from here use torch's
(`torch.get_num_threads()`), so the two never run more threads than torch was given.
"""

from __future__ import annotations

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "rnnfast.torch needs PyTorch: pip install torch (rnnfast itself does not)"
    ) from error

from ._cells import GRUCell, LSTMCell, RNNCell
from ._modules import GRU, LSTM, RNN

# torch.load's default (weights_only=True) unpickles only allowlisted classes: rnnfast's three
# are plain torch modules (parameters, settings, no code run at load), so they are listed, and a
# saved patched module loads back patched wherever rnnfast.torch is imported. (A whole model's
# torch.nn classes are not on torch's own list either; torch's message says how to add them.)
torch.serialization.add_safe_globals([RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell])

_TO_RNNFAST: dict[type, type] = {
    torch.nn.RNN: RNN,
    torch.nn.LSTM: LSTM,
    torch.nn.GRU: GRU,
    torch.nn.RNNCell: RNNCell,
    torch.nn.LSTMCell: LSTMCell,
    torch.nn.GRUCell: GRUCell,
}
_TO_TORCH = {v: k for k, v in _TO_RNNFAST.items()}
_CELLS = (RNNCell, LSTMCell, GRUCell)


def patch(model: torch.nn.Module, *, cells: bool = True) -> torch.nn.Module:
    """Makes every torch.nn.RNN, LSTM and GRU in `model` (itself included), and with `cells`
    every RNNCell, LSTMCell and GRUCell, run on rnnfast, in place: each keeps its Parameter
    objects, buffers, hooks and settings, so an optimiser built before goes on working and
    training continues with the same numbers. A module on another device is refused before
    anything changes. Returns `model`.

    A cell call is one small timestep, where torch's own per-call costs weigh as much as the
    product (see the README's measurements): `cells=False` leaves the cells torch's."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cells, bool):
        raise TypeError(f"cells: expected a bool, got {type(cells).__name__}")
    chosen = []
    for name, module in model.named_modules():
        target = _TO_RNNFAST.get(type(module))
        if target is None or (not cells and target in _CELLS):
            continue
        for p in module.parameters(recurse=False):
            if p.device.type != "cpu":
                raise ValueError(
                    f"patch: {name or 'model'} ({type(module).__name__}) has parameters on "
                    f"{p.device}; rnnfast runs on the CPU"
                )
        chosen.append((module, target))
    for module, target in chosen:
        module.__class__ = target
        if target is GRU:
            module.linear_before_reset = True
    return model


def unpatch(model: torch.nn.Module) -> torch.nn.Module:
    """Undoes `patch`: every rnnfast.torch module in `model` becomes torch's own again (same
    Parameter objects). A GRU with linear_before_reset=False, which torch cannot compute, is
    refused before anything changes. Returns `model`."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    modules = [m for m in model.modules() if type(m) in _TO_TORCH]
    for name, m in model.named_modules():
        if isinstance(m, GRU) and not m.linear_before_reset:
            raise ValueError(
                f"unpatch: {name or 'model'} is a GRU with linear_before_reset=False, "
                "which torch.nn.GRU does not compute"
            )
    for m in modules:
        m.__dict__.pop("_rnnfast", None)
        m.__dict__.pop("linear_before_reset", None)
        m.__class__ = _TO_TORCH[type(m)]
    return model


__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "patch", "unpatch"]
