"""The training toolkit: layers and losses (finite differences), clipping, initialisers,
optimisers (hand-computed steps, exact resume), truncated BPTT helpers and the tasks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import numeric_grad

import rnnfast
from rnnfast import clip, init, nn, optim, tasks, tbptt

# ---- layers and losses --------------------------------------------------------------------


def test_linear_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 3, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 2, 4))
    w = rng.standard_normal((5, 2, 3))
    y, tape = lin.forward(x)
    np.testing.assert_allclose(y, x @ lin.params["weight"].T + lin.params["bias"])
    dx = lin.backward(tape, w)

    def loss():
        return float(np.sum(lin(x) * w))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    with lin.params.writable() as params:
        for name, p in params.items():
            np.testing.assert_allclose(lin.grads[name], numeric_grad(loss, p), rtol=1e-6, atol=1e-8)


def test_linear_float32_and_bad_input():
    lin = nn.Linear(4, 3, seed=0)
    y = lin(np.ones((2, 4), np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 3)
    with pytest.raises(ValueError, match=r"x: expected last dimension 4 \(in_features\)"):
        lin(np.ones((2, 5), np.float32))
    _, tape = lin.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\)"):
        lin.backward(tape, np.ones((2, 4), np.float32))
    lin.backward(tape, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"tape: already used"):
        lin.backward(tape, np.ones((2, 3), np.float32))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_value_and_gradient(reduction):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 3, 5))
    t = rng.integers(0, 5, size=(4, 3))
    t[0, 1] = -100  # ignored
    mask = np.ones((4, 3), bool)
    mask[3] = False  # padded step
    ce = nn.CrossEntropyLoss(reduction=reduction)
    loss, cache = ce.forward(z, t, mask)
    counted = (t != -100) & mask
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(counted, t, 0)[..., None], -1)[..., 0]
    want = -(picked * counted).sum() / (counted.sum() if reduction == "mean" else 1)
    assert loss == pytest.approx(want, rel=1e-12)
    grad = ce.backward(cache)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: ce.forward(z, t, mask)[0], z), rtol=1e-6, atol=1e-9
    )


def test_cross_entropy_is_stable_and_checks_targets():
    ce = nn.CrossEntropyLoss()
    loss, cache = ce.forward(np.array([[1e4, 0.0, -1e4]]), np.array([1]))
    assert loss == pytest.approx(1e4) and np.all(np.isfinite(ce.backward(cache)))
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, 3\)"):
        ce.forward(np.zeros((2, 3)), np.array([0, 3]))
    loss, cache = ce.forward(np.zeros((2, 3)), np.array([-100, -100]))
    assert loss == 0.0 and not ce.backward(cache).any()


def test_cross_entropy_in_float32_and_with_nan():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((6, 40)) * 3
    t = rng.integers(0, 40, size=6)
    ce = nn.CrossEntropyLoss()
    loss64, cache64 = ce.forward(z, t)
    loss32, cache32 = ce.forward(z.astype(np.float32), t)
    grad32 = ce.backward(cache32, 2.0)
    assert grad32.dtype == np.float32 and loss32 == pytest.approx(loss64, rel=1e-6)
    np.testing.assert_allclose(grad32, 2.0 * ce.backward(cache64), rtol=1e-5, atol=1e-8)
    z[2, 5] = np.nan  # a NaN logit spoils its row (and the mean), as NumPy's formula would
    loss, cache = ce.forward(z, t)
    grad = ce.backward(cache)
    assert np.isnan(loss) and np.isnan(grad[2]).all() and np.isfinite(np.delete(grad, 2, 0)).all()


def test_cross_entropy_core_checks_its_arrays():
    from rnnfast import _core

    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, 3\), got 3 at row 1"):
        _core.softmax_cross_entropy(z, np.array([0, 3]), np.array([True, True]), 1.0)
    # A row not counted is not read: its target may be anything.
    total, grad = _core.softmax_cross_entropy(z, np.array([0, 3]), np.array([True, False]), 1.0)
    assert total == pytest.approx(np.log(3)) and not grad[1].any()
    with pytest.raises(TypeError, match="counted: expected dtype bool"):
        _core.softmax_cross_entropy(z, np.array([0, 1]), np.array([1, 1]), 1.0)


def test_mse_value_and_gradient():
    rng = np.random.default_rng(2)
    p, t = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    mask = rng.random((6, 2)) > 0.3
    mse = nn.MSELoss()
    loss, cache = mse.forward(p, t, mask)
    assert loss == pytest.approx(((p - t) ** 2 * mask).sum() / mask.sum())
    np.testing.assert_allclose(
        mse.backward(cache), numeric_grad(lambda: mse.forward(p, t, mask)[0], p), atol=1e-8
    )


# ---- clipping -----------------------------------------------------------------------------


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip.clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6])
    np.testing.assert_allclose(grads["b"], [[0.8]])
    assert clip.clip_grad_norm([grads], 2.0) == pytest.approx(1.0)  # under the limit: unchanged
    np.testing.assert_allclose(grads["a"], [0.6])


def test_clip_grad_norm_reports_non_finite_norms():
    grads = {"a": np.array([np.nan, 1.0])}
    assert np.isnan(clip.clip_grad_norm(grads, 1.0))
    assert grads["a"][1] == 1.0  # not scaled into NaN
    with pytest.raises(FloatingPointError, match="the gradient norm is inf"):
        clip.clip_grad_norm({"a": np.array([np.inf])}, 1.0, error_if_nonfinite=True)


def test_clip_grad_value_clamps():
    g = {"w": np.array([-7.0, 2.0, 9.0])}
    clip.clip_grad_value(g, 5)
    np.testing.assert_array_equal(g["w"], [-5, 2, 5])
    with pytest.raises(ValueError, match="limit: expected a positive number"):
        clip.clip_grad_value(g, 0)


# ---- initialisers -------------------------------------------------------------------------


def test_orthogonal_and_identity_per_gate_block():
    lstm = rnnfast.LSTM(3, 5)
    init.init_module(lstm, weight_hh="orthogonal", weight_ih="xavier_uniform", seed=3)
    w = lstm.params["weight_hh_l0"].astype(np.float64)
    for k in range(4):
        block = w[5 * k : 5 * (k + 1)]
        np.testing.assert_allclose(block @ block.T, np.eye(5), atol=1e-6)
    assert not lstm.params["bias_ih_l0"].any()
    bound = np.sqrt(6 / (5 + 3))
    assert np.abs(lstm.params["weight_ih_l0"]).max() <= bound
    irnn = rnnfast.RNN(2, 4, nonlinearity="relu")
    init.init_module(irnn, weight_hh="identity", seed=0)
    np.testing.assert_array_equal(irnn.params["weight_hh_l0"], np.eye(4))
    with pytest.raises(ValueError, match="identity: needs square gate blocks"):
        init.init_module(rnnfast.RNN(2, 4), weight_ih="identity")


def test_initialisers_are_seeded():
    a, b = rnnfast.GRU(3, 4), rnnfast.GRU(3, 4)
    for m in (a, b):
        init.init_module(m, weight_hh="orthogonal", weight_ih="xavier_normal", seed=11)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


# ---- optimisers ---------------------------------------------------------------------------


class Scalar(rnnfast.nn.Module):
    """One parameter vector, gradients set by hand."""

    def __init__(self, value):
        self.dtype = np.dtype(np.float64)
        self.params = {"p": np.array(value, dtype=np.float64)}
        self.grads = {"p": np.zeros_like(self.params["p"])}

    def _param_shapes(self):
        return {"p": self.params["p"].shape}


def run(opt_cls, grads, **kw):
    m = Scalar([1.0])
    opt = opt_cls(m, **kw)
    for g in grads:
        m.grads["p"][...] = g
        opt.step()
    return m.params["p"][0]


def test_sgd_momentum_and_nesterov_by_hand():
    assert run(optim.SGD, [0.5], lr=0.1) == pytest.approx(0.95)
    # momentum 0.9: b1 = 0.5, p = 0.95; b2 = 0.9*0.5 + 1.0 = 1.45, p = 0.95 - 0.145
    assert run(optim.SGD, [0.5, 1.0], lr=0.1, momentum=0.9) == pytest.approx(0.805)
    # nesterov: step 1 uses g + 0.9*b1 = 0.95 -> 0.905; step 2 b2 = 1.45, d = 1 + 1.305
    assert run(optim.SGD, [0.5, 1.0], lr=0.1, momentum=0.9, nesterov=True) == pytest.approx(
        1.0 - 0.095 - 0.2305
    )


def test_adagrad_rmsprop_adam_adamw_by_hand():
    assert run(optim.Adagrad, [2.0], lr=0.1) == pytest.approx(1.0 - 0.1 * 2 / (2 + 1e-10))
    assert run(optim.Adagrad, [2.0], lr=0.1, eps=1e-8, eps_inside_sqrt=True) == pytest.approx(
        1.0 - 0.1 * 2 / np.sqrt(4 + 1e-8)
    )
    v = 0.01 * 4.0
    assert run(optim.RMSprop, [2.0], lr=0.01) == pytest.approx(1.0 - 0.01 * 2 / (np.sqrt(v) + 1e-8))
    # Adam's first step moves by lr * sign(g) (bias-corrected m/sqrt(v) = 1)
    assert run(optim.Adam, [3.0], lr=0.01) == pytest.approx(1.0 - 0.01, rel=1e-6)
    assert run(optim.AdamW, [3.0], lr=0.01, weight_decay=0.1) == pytest.approx(
        1.0 * (1 - 0.001) - 0.01, rel=1e-6
    )


def test_optimiser_state_round_trip_continues_bit_identically():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)

    def make():
        lstm, head = rnnfast.LSTM(3, 4, seed=1), nn.Linear(4, 1, seed=2)
        return lstm, head, optim.Adam([lstm, head], lr=0.01)

    def train(lstm, head, opt, n):
        for _ in range(n):
            opt.zero_grad()
            y, _, tape = lstm.forward(x)
            out, htape = head.forward(y)
            lstm.backward(tape, head.backward(htape, 2 * out / out.size))
            opt.step()

    a = make()
    train(*a, 3)
    saved = (
        {k: v.copy() for k, v in a[0].params.items()},
        {k: v.copy() for k, v in a[1].params.items()},
        a[2].state_dict(),
    )
    train(*a, 2)
    b = make()
    b[0].load_state_dict(saved[0])
    b[1].load_state_dict(saved[1])
    b[2].load_state_dict(saved[2])
    train(*b, 2)
    for ma, mb in ((a[0], b[0]), (a[1], b[1])):
        for k in ma.params:
            assert ma.params[k].tobytes() == mb.params[k].tobytes()


def test_optimiser_checks_arguments():
    with pytest.raises(ValueError, match="lr: expected a positive number"):
        optim.SGD(Scalar([1.0]), lr=0)
    with pytest.raises(TypeError, match="modules: expected an rnnfast module"):
        optim.Adam([object()])
    with pytest.raises(ValueError, match="state_dict: made by 'SGD', not 'Adam'"):
        optim.Adam(Scalar([1.0])).load_state_dict(optim.SGD(Scalar([1.0]), lr=1).state_dict())


# ---- truncated BPTT ------------------------------------------------------------------------


def test_chunks_carry_and_reset():
    assert list(tbptt.chunks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(tbptt.chunks(10, 4, drop_last=True)) == [(0, 4), (4, 8)]
    h, c = np.ones((1, 2, 3)), np.ones((1, 2, 3))
    h2, c2 = tbptt.carry((h, c))
    h[:] = 5
    assert h2.max() == 1
    tbptt.reset((h2, c2), [1])
    assert not h2[:, 1].any() and h2[:, 0].all() and not c2[:, 1].any()


def test_truncated_bptt_equals_one_pass_forward_and_stops_gradients():
    """Chunks carrying the state give the one-pass outputs; each chunk's gradients depend only
    on its own steps."""
    rnn = rnnfast.GRU(2, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((9, 1, 2))
    whole, _ = rnn(x)
    state, pieces = None, []
    for start, stop in tbptt.chunks(9, 4):
        y, state_n, _ = rnn.forward(x[start:stop], state)
        pieces.append(y)
        state = tbptt.carry(state_n)
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=1e-12)


# ---- tasks ---------------------------------------------------------------------------------


def test_adding_problem_labels():
    x, y = tasks.adding_problem(50, 20, seed=0)
    assert x.shape == (20, 50, 2) and y.shape == (50, 1)
    assert np.all(x[:, :, 1].sum(0) == 2)
    assert np.all(x[:10, :, 1].sum(0) == 1)  # one marker in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(0), rtol=1e-6)


def test_copy_task_labels():
    x, t = tasks.copy_task(4, length=5, delay=7, symbols=6, seed=1)
    assert x.shape == (17, 4, 8) and t.shape == (17, 4)
    np.testing.assert_array_equal(t[12:], x[:5].argmax(-1))
    assert np.all(t[:12] == 6) and np.all(x[11].argmax(-1) == 7)


def reber_valid(s):
    """Checks a string against the embedded Reber grammar itself."""
    if len(s) < 9 or s[0] != "B" or s[1] not in "TP" or s[-2] != s[1] or s[-1] != "E":
        return False
    inner, state = s[2:-2], 1
    if inner[0] != "B" or inner[-1] != "E":
        return False
    for ch in inner[1:-1]:
        moves = dict(tasks._REBER.get(state, []))
        if ch not in moves:
            return False
        state = moves[ch]
    return state == 6


def test_embedded_reber_strings_and_targets():
    batch = tasks.embedded_reber(200, seed=2)
    assert all(reber_valid(s) for s in batch.strings)
    for b, s in enumerate(batch.strings):
        for t in range(len(s) - 1):
            # the symbol that does come next is always among the targets
            assert batch.targets[t, b, tasks.REBER_SYMBOLS.index(s[t + 1])] == 1
        assert batch.targets[len(s) - 3, b].sum() == 1  # after the inner E: only the branch
        assert not batch.x[len(s) - 1 :, b].any()


def test_mass_spring_obeys_the_equation():
    f, pos = tasks.mass_spring(3, 200, dt=0.05, mass=2.0, seed=3)
    x, v = 0.0 * pos[0, :, 0], 0.0 * pos[0, :, 0]
    for i in range(200):
        x, v = x + 0.05 * v, v + 0.05 * (f[i, :, 0] - x) / 2.0
        np.testing.assert_allclose(pos[i, :, 0], x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["adding", "mass_spring"])
def test_short_training_lowers_the_loss(task):
    rng = np.random.default_rng(0)
    lstm, head = rnnfast.LSTM(2 if task == "adding" else 1, 16, seed=0), nn.Linear(16, 1, seed=1)
    opt, mse = optim.Adam([lstm, head], lr=0.01), nn.MSELoss()
    losses = []
    for _ in range(60):
        if task == "adding":
            x, y = tasks.adding_problem(32, 10, seed=rng)
        else:
            x, y = tasks.mass_spring(16, 30, seed=rng)
        opt.zero_grad()
        out, _, tape = lstm.forward(x)
        last = out[-1] if task == "adding" else out
        pred, htape = head.forward(last)
        loss, cache = mse.forward(pred, y)
        dlast = head.backward(htape, mse.backward(cache))
        dy = np.zeros_like(out)
        if task == "adding":
            dy[-1] = dlast
        else:
            dy = dlast
        lstm.backward(tape, dy)
        clip.clip_grad_norm([lstm.grads, head.grads], 1.0)
        opt.step()
        losses.append(loss)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_bce_with_logits_value_and_gradient():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 3)) * 3
    t = (rng.random((5, 3)) > 0.5).astype(float)
    mask = rng.random((5, 3)) > 0.2
    bce = nn.BCEWithLogitsLoss()
    loss, cache = bce.forward(z, t, mask)
    s = 1 / (1 + np.exp(-z))
    want = (-(t * np.log(s) + (1 - t) * np.log(1 - s)) * mask).sum() / mask.sum()
    assert loss == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(
        bce.backward(cache), numeric_grad(lambda: bce.forward(z, t, mask)[0], z), atol=1e-8
    )
    big, _ = bce.forward(np.array([1e4, -1e4]), np.array([0.0, 1.0]))
    assert big == pytest.approx(1e4)


def test_checkpoint_is_atomic_and_round_trips(tmp_path, monkeypatch):
    from rnnfast import checkpoint

    path = tmp_path / "run.npz"
    checkpoint.save(path, {"a": np.arange(3.0)}, {"step": 1})
    arrays, meta = checkpoint.load(path)
    assert meta == {"format": "rnnfast-checkpoint", "step": 1}
    assert arrays["a"].tolist() == [0, 1, 2]

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # interrupted in the middle of writing

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"a": np.zeros(3)}, {"step": 2})
    monkeypatch.undo()
    arrays, meta = checkpoint.load(path)  # the old checkpoint, intact
    assert meta["step"] == 1 and arrays["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary left behind
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "junk.npz")


def numpy_update(kind, p, g, st, h, t):
    """The optimisers' docstring formulas in NumPy: the oracle for the fused C++ updates."""
    d = g + h.get("weight_decay", 0) * p if h.get("weight_decay") and kind != "adamw" else g
    if kind == "sgd":
        if h["momentum"]:
            st[0] = d.copy() if t == 1 else h["momentum"] * st[0] + (1 - h["dampening"]) * d
            d = d + h["momentum"] * st[0] if h["nesterov"] else st[0]
        return p - h["lr"] * d
    if kind == "adagrad":
        st[0] = st[0] + d * d
        den = np.sqrt(st[0] + h["eps"]) if h["eps_inside_sqrt"] else np.sqrt(st[0]) + h["eps"]
        return p - h["lr"] * d / den
    if kind == "rmsprop":
        st[0] = h["alpha"] * st[0] + (1 - h["alpha"]) * d * d
        avg = st[0]
        if h["centered"]:
            st[1] = h["alpha"] * st[1] + (1 - h["alpha"]) * d
            avg = st[0] - st[1] * st[1]
        den = np.sqrt(avg) + h["eps"]
        if h["momentum"]:
            st[2] = h["momentum"] * st[2] + d / den
            return p - h["lr"] * st[2]
        return p - h["lr"] * d / den
    if kind == "adamw":
        p = p * (1 - h["lr"] * h["weight_decay"])
    st[0] = h["beta1"] * st[0] + (1 - h["beta1"]) * d
    st[1] = h["beta2"] * st[1] + (1 - h["beta2"]) * d * d
    bc1, bc2 = 1 - h["beta1"] ** t, 1 - h["beta2"] ** t
    return p - h["lr"] / bc1 * st[0] / (np.sqrt(st[1]) / np.sqrt(bc2) + h["eps"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    ("cls", "kind", "kw"),
    [
        (optim.SGD, "sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        (optim.SGD, "sgd", dict(lr=0.1, momentum=0.8, nesterov=True)),
        (optim.Adagrad, "adagrad", dict(lr=0.1, eps=1e-8, eps_inside_sqrt=True, weight_decay=0.1)),
        (optim.RMSprop, "rmsprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
        (optim.RMSprop, "rmsprop", dict(lr=0.01)),
        (optim.Adam, "adam", dict(lr=0.01, weight_decay=0.1)),
        (optim.AdamW, "adamw", dict(lr=0.01, weight_decay=0.1)),
    ],
)
def test_updates_match_the_documented_formulas(cls, kind, kw, dtype):
    rng = np.random.default_rng(5)
    m = Scalar(rng.standard_normal(1000))
    m.dtype = np.dtype(dtype)
    m.params["p"] = m.params["p"].astype(dtype)
    m.grads["p"] = np.zeros_like(m.params["p"])
    opt = cls(m, **kw)
    h = {**opt.hyper, "momentum": opt.hyper.get("momentum", 0)}
    p = m.params["p"].astype(np.float64)
    st = [np.zeros(1000) for _ in range(3)]
    for t in range(1, 7):
        g = rng.standard_normal(1000)
        m.grads["p"][...] = g
        opt.step()
        p = numpy_update(kind, p, g.astype(dtype).astype(np.float64), st, h, t)
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(m.params["p"], p, rtol=tol, atol=tol)
