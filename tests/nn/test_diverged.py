"""Divergence names the layer that exploded: in the exception, its message and its pickled copy."""

import pickle

import numpy as np
import pytest

from pipeline.data.sources import digits_arrays
from pipeline.nn import Architecture, Diverged, FitOptions, encode_labels, fit, forward, initialize
from pipeline.nn import train as train_module
from pipeline.nn.train import exploded_layer


@pytest.fixture(scope="module")
def digits():
    data, target = digits_arrays()
    return (data[:600] / 16.0).T, target[:600]


def scaled_init(monkeypatch: pytest.MonkeyPatch, scale) -> None:
    """fit starts from nn.initialize's weights with ``scale(name, W)`` applied to each weight matrix."""
    real = train_module.initialize

    def init(arch, rng):
        weights = real(arch, rng)
        return {k: scale(k, W).astype(W.dtype) if k.startswith("W") else W for k, W in weights.items()}

    monkeypatch.setattr(train_module, "initialize", init)


def test_large_he_weights_with_a_large_learning_rate_diverge_and_name_a_layer(digits, monkeypatch):
    X, y = digits
    scaled_init(monkeypatch, lambda name, W: 50 * W)  # He x 50: every layer multiplies activations by ~50
    arch = Architecture.build(64, 10, (64, 64, 64, 64))
    with pytest.raises(Diverged) as info:
        fit(X, y, arch, FitOptions(learning_rate=0.3, epochs=5, optimizer="gd"), seed=0)
    layer = info.value.layer
    assert layer is not None and 1 <= layer <= arch.n_layers
    assert f"at epoch 1 (layer {layer} exploded): lower the learning rate" in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))  # crosses a process boundary intact
    assert (copy.epoch, copy.layer, str(copy)) == (info.value.epoch, layer, str(info.value))


def test_the_layer_whose_output_overflows_is_named(digits, monkeypatch):
    # tanh keeps every hidden activation in [-1, 1], so with normal hidden weights only the output
    # layer, its weights near float32's largest value, can overflow: layer 3 and no other.
    X, y = digits
    scaled_init(monkeypatch, lambda name, W: W / np.abs(W).max() * 3e38 if name == "W3" else W)
    arch = Architecture.build(64, 10, (32, 32), "tanh", dtype="float32")
    with pytest.raises(Diverged, match=r"cost became nan at epoch 1 \(layer 3 exploded\)") as info:
        fit(X, y, arch, FitOptions(learning_rate=0.01, epochs=2, optimizer="gd"), seed=0)
    assert info.value.layer == 3


def pass_of(arch: Architecture, weights, X, y):
    ZL, caches = forward(X, weights, arch)
    return weights, caches, ZL, encode_labels(y, arch), arch


def test_exploded_layer_follows_weights_then_activations_then_gradients_then_the_update_ratio(digits):
    X, y = digits
    arch = Architecture.build(64, 10, (16, 16))
    fresh = initialize(arch, np.random.default_rng(0))
    with np.errstate(over="ignore", invalid="ignore"):
        weights = {**fresh, "W2": fresh["W2"].copy()}
        weights["W2"][0, 0] = np.inf  # a weight an earlier update overflowed
        assert exploded_layer(*pass_of(arch, weights, X, y), 0.1) == 2
        weights = {**fresh, "b3": fresh["b3"] + 1e308}  # finite weights whose output overflows
        weights["W3"] = fresh["W3"] * 1e308
        assert exploded_layer(*pass_of(arch, weights, X, y), 0.1) == 3
    # Everything finite: the layer that would move most relative to its size (W1 100x smaller).
    weights = {**fresh, "W1": fresh["W1"] / 100}
    assert exploded_layer(*pass_of(arch, weights, X, y), 0.1) == 1
    weights = {**fresh, "W2": fresh["W2"] / 100}
    assert exploded_layer(*pass_of(arch, weights, X, y), 0.1) == 2


def test_without_a_layer_the_message_is_unchanged():
    assert str(Diverged(3, float("nan"))) == "cost became nan at epoch 3: lower the learning rate"
    assert Diverged(3, float("inf")).layer is None
