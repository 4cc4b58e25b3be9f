"""min-char-rnn fidelity: rnnfast's toolkit runs Karpathy's algorithm step for step.

A straight NumPy transcription of min-char-rnn (Elman tanh RNN, hidden 100, seq_length 25,
Adagrad lr 0.1 with eps 1e-8 inside the square root, every gradient clipped to [-5, 5],
batch 1, the hidden state carried across chunks) recomputes each iteration from rnnfast's
current parameters, hidden state and Adagrad memory. Loss, carried state, every gradient and
the updated parameters must agree at each of 300 iterations (float64). Whole trajectories are
not compared: two separately run trainings drift apart chaotically from rounding alone.

Mapping: Wxh, Whh, bh -> RNN weight_ih_l0, weight_hh_l0, bias_ih_l0 (bias_hh_l0 is held at 0:
its gradient is zeroed, so Adagrad moves it by 0); Why, by -> Linear weight, bias; the loss is
cross-entropy summed over the chunk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import rnnfast
from rnnfast import clip, nn, optim, tbptt

HIDDEN, SEQ, LR = 100, 25, 0.1


def reference_loss(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """min-char-rnn's lossFun, transcribed (column vectors, loops over time)."""
    vocab = Wxh.shape[1]
    xs, hs, ps = {}, {-1: hprev.copy()}, {}
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ys = Why @ hs[t] + by
        ps[t] = np.exp(ys) / np.sum(np.exp(ys))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    for d in (dWxh, dWhh, dWhy, dbh, dby):
        np.clip(d, -5, 5, out=d)
    return loss, (dWxh, dWhh, dWhy, dbh, dby), hs[len(inputs) - 1]


def test_rnnfast_toolkit_reproduces_min_char_rnn_step_by_step():
    data = Path(os.__file__).read_text()[:6000]  # real text present on every machine
    chars = sorted(set(data))
    vocab = len(chars)
    ix = {c: i for i, c in enumerate(chars)}
    rng = np.random.default_rng(0)
    rnn = rnnfast.RNN(vocab, HIDDEN, dtype=np.float64)
    head = nn.Linear(HIDDEN, vocab, dtype=np.float64)
    for m, shapes in ((rnn, ("weight_ih_l0", "weight_hh_l0")), (head, ("weight",))):
        with m.params.writable() as params:  # min-char-rnn's init: N(0, 0.01^2), zero biases
            for name, p in params.items():
                p[...] = rng.standard_normal(p.shape) * 0.01 if name in shapes else 0
    opt = optim.Adagrad([rnn, head], lr=LR, eps=1e-8, eps_inside_sqrt=True)
    ce = nn.CrossEntropyLoss(reduction="sum")
    eye = np.eye(vocab)

    state, p = None, 0
    for n in range(300):
        if p + SEQ + 1 >= len(data) or n == 0:
            state, p = np.zeros((1, 1, HIDDEN)), 0  # start again at the beginning of the text
        inputs = [ix[c] for c in data[p : p + SEQ]]
        targets = [ix[c] for c in data[p + 1 : p + SEQ + 1]]

        # The transcription, from rnnfast's current parameters and state.
        P = {
            k: v.copy()
            for k, v in {**rnn.params, **{"head." + k: v for k, v in head.params.items()}}.items()
        }
        want_loss, want_grads, want_h = reference_loss(
            inputs,
            targets,
            state[0, 0][:, None],
            P["weight_ih_l0"],
            P["weight_hh_l0"],
            P["head.weight"],
            P["bias_ih_l0"][:, None],
            P["head.bias"][:, None],
        )

        # The same step with rnnfast.
        opt.zero_grad()
        y, state_n, tape = rnn.forward(eye[inputs][:, None, :], state)
        logits, htape = head.forward(y)
        loss, cache = ce.forward(logits, np.array(targets)[:, None])
        rnn.backward(tape, head.backward(htape, ce.backward(cache)))  # no dstate_n: truncated
        rnn.grads["bias_hh_l0"][...] = 0  # min-char-rnn has one hidden bias
        clip.clip_grad_value([rnn.grads, head.grads], 5)

        assert abs(loss - want_loss) <= 1e-10 * want_loss, n
        np.testing.assert_allclose(state_n[0, 0], want_h[:, 0], rtol=1e-10, atol=1e-13)
        got = (
            rnn.grads["weight_ih_l0"],
            rnn.grads["weight_hh_l0"],
            head.grads["weight"],
            rnn.grads["bias_ih_l0"][:, None],
            head.grads["bias"][:, None],
        )
        for g, w in zip(got, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-12, err_msg=f"iteration {n}")

        # Adagrad, transcribed, from rnnfast's memory; then rnnfast's step.
        mem = {k: s["sum"].copy() for k, s in opt.state.items()}
        opt.step()
        for (key, param, grad), w in zip(
            [(k, pp, g) for k, pp, g in opt._entries if not k.endswith("bias_hh_l0")],
            [
                P[n_]
                for n_ in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "head.weight", "head.bias")
            ],
        ):
            m_ = mem[key] + grad * grad
            np.testing.assert_allclose(
                param, w - LR * grad / np.sqrt(m_ + 1e-8), rtol=1e-12, atol=1e-15
            )
        assert not rnn.params["bias_hh_l0"].any()

        state = tbptt.carry(state_n)
        p += SEQ
