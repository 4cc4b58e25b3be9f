"""PyTorch's state dicts load as they are and give PyTorch's outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import state_arrays

import rnnfast
from rnnfast import reference

torch = pytest.importorskip("torch")

TORCH_CELLS = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {}),
    ("GRU", {}),
]


@pytest.mark.parametrize("engine", [rnnfast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("packed", [False, True], ids=["full", "packed"])
@pytest.mark.parametrize(("cls", "kw"), TORCH_CELLS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_matches_pytorch(engine, cls, kw, packed):
    torch.manual_seed(0)
    opts = dict(num_layers=2, bidirectional=True, batch_first=True)
    tm = getattr(torch.nn, cls)(4, 5, **kw, **opts).double()
    m = getattr(engine, cls)(4, 5, **kw, **opts, dtype=np.float64)
    m.load_state_dict({k: t.detach().numpy() for k, t in tm.state_dict().items()})

    rng = np.random.default_rng(0)
    batch, steps = 3, 6
    lengths = [6, 3, 4] if packed else None
    x = rng.standard_normal((batch, steps, 4))
    h0 = rng.standard_normal((4, batch, 5))
    state = (h0, rng.standard_normal(h0.shape)) if cls == "LSTM" else h0

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state_arrays(state))
    st_arg = st if cls == "LSTM" else st[0]
    if packed:
        seq = torch.nn.utils.rnn.pack_padded_sequence(
            xt, lengths, batch_first=True, enforce_sorted=False
        )
        out, sn = tm(seq, st_arg)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
    else:
        yt, sn = tm(xt, st_arg)
    dy = rng.standard_normal(tuple(yt.shape))
    sn_list = list(sn) if cls == "LSTM" else [sn]
    dsn = [rng.standard_normal(tuple(s.shape)) for s in sn_list]
    loss = (yt * torch.tensor(dy)).sum() + sum(
        (s * torch.tensor(d)).sum() for s, d in zip(sn_list, dsn)
    )
    loss.backward()

    y, s_n, tape = m.forward(x, state, lengths)
    dx, ds0 = m.backward(tape, dy, tuple(dsn) if cls == "LSTM" else dsn[0])

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, b in zip(state_arrays(s_n), sn_list):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for a, b in zip(state_arrays(ds0), st):
        np.testing.assert_allclose(a, b.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(
            m.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


def test_float32_state_dict_gives_pytorch_float32_outputs():
    torch.manual_seed(1)
    tm = torch.nn.LSTM(8, 16)
    m = rnnfast.LSTM(8, 16)
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((10, 4, 8)).astype(np.float32)
    with torch.no_grad():
        yt, (ht, ct) = tm(torch.from_numpy(x))
    y, (h, c) = m(x)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ht.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, ct.numpy(), rtol=1e-5, atol=1e-6)
