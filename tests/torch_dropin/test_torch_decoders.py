"""Sequence-to-sequence decoders as people write them with torch.nn: an encoder reads the source
in one call, a decoder steps its own recurrent module one token at a time (T = 1 calls, greedy
decoding without autograd, teacher forcing with it), its state carried between calls. The model
patched by rnnfast.torch against the same model as torch.nn runs it: the decoded tokens, the
log-probabilities, the gradients of a training step, and the decoding after the optimiser's
in-place update of the weights."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnnfast.torch")
nn = torch.nn

VOCAB, HIDDEN, START = 23, 40, 0


class Encoder(nn.Module):
    def __init__(self, kind: str, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.rnn = getattr(nn, kind)(HIDDEN, HIDDEN, layers, batch_first=True)

    def forward(self, src):
        return self.rnn(self.embed(src))


class Decoder(nn.Module):
    def __init__(self, kind: str, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        drop = 0.3 if layers > 1 else 0.0  # (eval mode: off; train mode drops between layers)
        self.rnn = getattr(nn, kind)(HIDDEN, HIDDEN, layers, batch_first=True, dropout=drop)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def step(self, token, state):
        """One token a row (B, 1) -> log-probabilities (B, VOCAB) and the next state."""
        y, state = self.rnn(torch.relu(self.embed(token)), state)
        return torch.log_softmax(self.out(y[:, 0]), dim=-1), state

    def forward(self, state, steps, targets=None):
        token = torch.full((state_batch(state), 1), START, dtype=torch.long)
        outs = []
        for t in range(steps):
            logp, state = self.step(token, state)
            outs.append(logp)
            nxt = targets[:, t : t + 1] if targets is not None else logp.argmax(-1, keepdim=True)
            token = nxt.detach()
        return torch.stack(outs, 1), state


def state_batch(state):
    return (state[0] if isinstance(state, tuple) else state).shape[1]


class Seq2Seq(nn.Module):
    def __init__(self, kind: str, layers: int) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(kind, layers), Decoder(kind, layers)

    def forward(self, src, steps, targets=None):
        _, state = self.encoder(src)
        return self.decoder(state, steps, targets)[0]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("kind", "layers"), [("GRU", 1), ("LSTM", 2), ("RNN", 2)])
def test_a_patched_seq2seq_model_decodes_and_trains_as_torch(kind, layers, batch):
    torch.manual_seed(0)
    native = Seq2Seq(kind, layers).double()
    ours = rt.patch(copy.deepcopy(native))
    assert type(ours.decoder.rnn).__module__.startswith("rnnfast")
    src = torch.randint(1, VOCAB, (batch, 7))
    targets = torch.randint(1, VOCAB, (batch, 6))
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (native, ours)]
    for m in (native, ours):
        m.eval()  # (rnnfast's dropout masks are its own: compared without them)
    for round_ in range(2):  # the second after an optimiser step wrote every weight in place
        with torch.no_grad():
            want, got = native(src, 6), ours(src, 6)
        assert torch.equal(want.argmax(-1), got.argmax(-1)), f"round {round_}: decoded tokens"
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        losses = []
        for m, opt in zip((native, ours), opts):
            opt.zero_grad()
            logp = m(src, 6, targets)
            loss = nn.functional.nll_loss(logp.reshape(-1, VOCAB), targets.reshape(-1))
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=1e-10)
        for (name, a), b in zip(native.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-8, atol=1e-10, msg=name)
        for opt in opts:
            opt.step()
