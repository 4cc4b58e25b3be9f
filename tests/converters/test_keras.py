"""rnnfast.keras: Keras 3 layers' weights give Keras's outputs (on the torch backend)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import rnnfast
import rnnfast.keras as rk

HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("torch")
needs_keras = pytest.mark.skipif(
    not HAVE_KERAS, reason="Keras 3 (with torch, its backend here) is not installed"
)


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()} here, not torch")
    return keras


def _layers(keras):
    L = keras.layers
    return {
        "simple_rnn": L.SimpleRNN(5, return_sequences=True, return_state=True),
        "simple_rnn_relu": L.SimpleRNN(5, activation="relu", return_sequences=True),
        "lstm": L.LSTM(5, return_sequences=True, return_state=True),
        "lstm_no_bias": L.LSTM(5, use_bias=False, return_sequences=True),
        "gru_reset_after": L.GRU(5, return_sequences=True, return_state=True),
        "gru_reset_before": L.GRU(5, reset_after=False, return_sequences=True),
        "bidirectional_gru": L.Bidirectional(L.GRU(5, return_sequences=True)),
    }


NAMES = [
    "simple_rnn",
    "simple_rnn_relu",
    "lstm",
    "lstm_no_bias",
    "gru_reset_after",
    "gru_reset_before",
    "bidirectional_gru",
]


@needs_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", NAMES)
def test_keras_weights_give_keras_outputs(name):
    keras = _keras()
    layer = _layers(keras)[name]
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype(np.float32)
    out = layer(x)
    parts = out if isinstance(out, (list, tuple)) else [out]
    outs = [np.asarray(o.detach().cpu().numpy()) for o in parts]
    m = rk.from_keras(layer)
    assert m.batch_first
    y, state = m(x)
    np.testing.assert_allclose(y, outs[0], rtol=1e-5, atol=1e-6)
    if len(outs) > 1:  # Keras's final h (and c): rnnfast's last layer's state
        mine = list(state) if isinstance(state, tuple) else [state]
        for theirs, ours in zip(outs[1:], mine):
            np.testing.assert_allclose(ours[-1], theirs, rtol=1e-5, atol=1e-6)
    again = rk.from_weights(
        type(layer).__name__ if name != "bidirectional_gru" else "GRU",
        (layer.forward_layer if name == "bidirectional_gru" else layer).get_weights(),
        activation="relu" if name == "simple_rnn_relu" else "tanh",
        reset_after=name != "gru_reset_before",
        backward_weights=layer.backward_layer.get_weights()
        if name == "bidirectional_gru"
        else None,
    )
    np.testing.assert_array_equal(again(x)[0], y)


@needs_keras
def test_settings_rnnfast_cannot_compute_are_refused():
    keras = _keras()
    L = keras.layers
    x = np.zeros((1, 2, 3), np.float32)
    for layer, what in [
        (L.LSTM(4, activation="relu"), "activation"),
        (L.GRU(4, recurrent_activation="hard_sigmoid"), "recurrent_activation"),
        (L.SimpleRNN(4, go_backwards=True), "go_backwards"),
        (L.Bidirectional(L.LSTM(4), merge_mode="sum"), "merge_mode"),
    ]:
        layer(x)
        with pytest.raises(ValueError, match=what):
            rk.from_keras(layer)


def test_from_weights_maps_gate_orders_without_keras():
    """Keras's GRU columns (z, r, h) become rnnfast's rows (r, z, n); LSTM's (i, f, c, o) keep
    their order; the bias (2, 3H) of reset_after splits into the input and recurrent biases."""
    h, i = 2, 3
    kernel = np.arange(i * 3 * h, dtype=np.float32).reshape(i, 3 * h)
    recurrent = np.arange(h * 3 * h, dtype=np.float32).reshape(h, 3 * h)
    bias = np.arange(2 * 3 * h, dtype=np.float32).reshape(2, 3 * h)
    m = rk.from_weights("GRU", [kernel, recurrent, bias])
    assert isinstance(m, rnnfast.GRU) and m.linear_before_reset
    np.testing.assert_array_equal(m.params["weight_ih_l0"][:h], kernel[:, h : 2 * h].T)  # r
    np.testing.assert_array_equal(m.params["weight_ih_l0"][h : 2 * h], kernel[:, :h].T)  # z
    np.testing.assert_array_equal(m.params["bias_hh_l0"][2 * h :], bias[1, 2 * h :])  # n
    lstm = rk.from_weights(
        "LSTM", [np.ones((3, 8), np.float32), np.ones((2, 8), np.float32)], dtype=np.float32
    )
    assert np.all(lstm.params["bias_ih_l0"] == 0)
    with pytest.raises(ValueError, match="kind"):
        rk.from_weights("Conv1D", [kernel, recurrent])
    with pytest.raises(ValueError, match="recurrent_kernel"):
        rk.from_weights("LSTM", [kernel, recurrent])
    with pytest.raises(ValueError, match="activation"):
        rk.from_weights("SimpleRNN", [np.ones((3, 2)), np.ones((2, 2))], activation="elu")


def _as_numpy(out):
    parts = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o.detach().cpu().numpy()) for o in parts]


def _keras_variants(keras):
    L = keras.layers
    return {
        "lstm_last": L.LSTM(5),  # Keras's default: the last step only
        "lstm_last_state": L.LSTM(5, return_state=True),
        "gru_backwards_seq": L.GRU(5, go_backwards=True, return_sequences=True),
        "rnn_backwards_last_state": L.SimpleRNN(5, go_backwards=True, return_state=True),
        "bidirectional_lstm_last_state": L.Bidirectional(L.LSTM(5, return_state=True)),
        "bidirectional_gru_last": L.Bidirectional(L.GRU(5)),
        "lstm_seq_state": L.LSTM(5, return_sequences=True, return_state=True),
    }


@needs_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "name",
    [
        "lstm_last",
        "lstm_last_state",
        "gru_backwards_seq",
        "rnn_backwards_last_state",
        "bidirectional_lstm_last_state",
        "bidirectional_gru_last",
        "lstm_seq_state",
    ],
)
def test_as_layer_returns_what_the_keras_layer_returns(name):
    """return_sequences, return_state and go_backwards honoured: the same list of arrays, of
    the same shapes, as the layer's call."""
    keras = _keras()
    layer = _keras_variants(keras)[name]
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype(np.float32)
    want = _as_numpy(layer(x))
    got = rk.as_layer(layer)(x)
    got = got if isinstance(got, list) else [got]
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # from_keras gives a module only where a module's output is the layer's.
    if name == "lstm_seq_state":
        assert isinstance(rk.from_keras(layer), rnnfast.LSTM)
    else:
        with pytest.raises(ValueError, match=r"return_sequences=False|go_backwards"):
            rk.from_keras(layer)


@needs_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_as_layer_takes_keras_initial_states():
    keras = _keras()
    layer = keras.layers.LSTM(5, return_state=True)
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype(np.float32)
    h0 = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    c0 = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    want = _as_numpy(layer(x, initial_state=[h0, c0]))
    got = rk.as_layer(layer)(x, initial_state=[h0, c0])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="initial_state"):
        rk.as_layer(layer)(x, initial_state=[h0])


@needs_keras
def test_stateful_layers_are_refused_by_name():
    keras = _keras()
    layer = keras.layers.GRU(5, stateful=True, return_sequences=True)
    layer.build((3, 7, 4))
    with pytest.raises(ValueError, match="stateful"):
        rk.from_keras(layer)
