"""A PyTorch model's training step with torch.nn's RNN and with rnnfast.torch (patched in).

embedding -> 2-layer LSTM or GRU -> linear, cross-entropy, Adam (rnnfast.cli.bench.TORCH_MODEL; the
quick grid uses TORCH_MODEL_QUICK). extra_info has tokens per step; divide by the median for
tokens/s. `rnnfast bench --torch-model` reports the same comparison with spreads.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rnnfast.cli.bench import TORCH_MODEL, TORCH_MODEL_QUICK, torch_char_model

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")


@pytest.mark.parametrize("engine", ["torch.nn", "rnnfast.torch"])
@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_torch_model_training_step(benchmark: Any, request: Any, rnn: str, engine: str) -> None:
    size = TORCH_MODEL_QUICK if request.config.getoption("--bench-quick") else TORCH_MODEL
    vocab, steps, batch = size[0], size[4], size[5]
    torch.manual_seed(0)
    model = torch_char_model(torch, rnn, size)
    if engine == "rnnfast.torch":
        model = rt.patch(copy.deepcopy(model))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, vocab, (steps + 1, batch), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        logits = model(ids[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark.group = f"torch model {rnn} training step"
    benchmark.extra_info["tokens"] = steps * batch
    benchmark.pedantic(step, rounds=10, warmup_rounds=1)
