"""rnnfast and ONNX (needs `pip install rnnfast[onnx]`; `import rnnfast` never imports onnx).

- `rnnfast.onnx.backend`: an ONNX backend running RNN, GRU and LSTM graphs on rnnfast.
- `to_modules(model)`: an ONNX model's recurrent nodes as rnnfast modules (for fine-tuning).
- `export(module, path)`: an rnnfast module as an ONNX model (one node per layer) that
  onnxruntime runs with the same outputs.
- `InferenceSession(path_or_bytes, sess_options=None)`: onnxruntime's session with the
  recurrent nodes run by rnnfast and every other node by onnxruntime (needs
  onnxruntime-extensions).

Supported: directions forward, reverse and bidirectional, layout 0 and 1, sequence_lens,
initial_h/initial_c, LSTM peepholes (input P), GRU linear_before_reset 0 and 1, RNN activations
Tanh or Relu. Refused with an error naming them: clip, input_forget, other activations.
"""

from __future__ import annotations

try:
    import onnx  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without onnx
    raise ImportError("rnnfast.onnx needs onnx: pip install onnx (or rnnfast[onnx])") from error

from ._export import export, to_modules
from ._session import InferenceSession
from ._weights import UnsupportedError

__all__ = ["InferenceSession", "UnsupportedError", "export", "to_modules"]
