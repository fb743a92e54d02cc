"""Per-layer gradient health: free of side effects, the gradient gradcheck validates, vanishing seen."""

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

import pipeline.nn.train as train
from pipeline.data.sources import digits_arrays
from pipeline.nn import (
    Architecture,
    FitOptions,
    LayerHealth,
    backward,
    encode_labels,
    fit,
    forward,
    gradient_check,
    initialize,
)
from pipeline.nn.health import SIGMOID_SATURATION, TANH_SATURATION, layer_health


@pytest.fixture(scope="module")
def digits():
    data, target = digits_arrays()
    X = (data / 16.0).T
    return X[:, :1400], target[:1400], X[:, 1400:], target[1400:]


HP = FitOptions(learning_rate=0.01, epochs=3, batch_size=100, l2_lambda=0.5, keep_prob=0.8)  # 14 batches


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_computing_health_changes_no_weight_or_cost_bit_for_bit(digits, optimizer: str, monkeypatch) -> None:
    X, y, Xd, yd = digits
    X, y = X[:, :1250], y[:1250]  # the last batch is partial (50 examples)
    arch = Architecture.build(64, 10, (32, 16))
    hp = replace(HP, optimizer=optimizer, learning_rate=0.1 if optimizer != "adam" else 0.01)

    def run(**kwargs) -> train.FitResult:
        return fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=7, **kwargs)

    def same(a: train.FitResult, b: train.FitResult) -> bool:
        costs = [(h.train_cost, h.dev_cost, h.dev_error) for h in a.history]
        return costs == [(h.train_cost, h.dev_cost, h.dev_error) for h in b.history] and all(
            np.array_equal(a.weights[k], b.weights[k]) for k in a.weights
        )

    with_health, without = run(), run(_health=False)
    assert all(len(h.health) == arch.n_layers for h in with_health.history)
    assert all(h.health == () for h in without.history)
    assert same(with_health, without)

    # the comparison catches a health computation that touches the gradients it reads
    def nudging(weights, grads, *args):
        grads["dW1"] *= 1 + 1e-9
        return layer_health(weights, grads, *args)

    monkeypatch.setattr(train, "layer_health", nudging)
    assert not same(run(), without)


def test_grad_norm_is_the_norm_of_the_gradient_backward_returns_and_gradcheck_validates(digits) -> None:
    X, y = digits[0][:, :300], digits[1][:300]
    arch = Architecture.build(64, 10, (16, 12), "tanh")
    # full-batch gradient descent is stateless: epoch 3's step starts from the weights of a 2-epoch run
    hp = FitOptions(learning_rate=0.5, epochs=3, batch_size=0, optimizer="gd", l2_lambda=0.8)
    health = fit(X, y, arch, hp, seed=0).history[-1].health
    weights = fit(X, y, arch, replace(hp, epochs=2), seed=0).weights

    ZL, caches = forward(X, weights, arch)
    grads = backward(ZL, encode_labels(y, arch), caches, weights, arch, hp.l2_lambda)
    assert gradient_check(X, y, weights, arch, hp.l2_lambda, n_checks=60) < 1e-7
    for h in health:
        W, dW = weights[f"W{h.layer}"], grads[f"dW{h.layer}"]
        assert h.w_norm == pytest.approx(np.linalg.norm(W), rel=1e-12)
        assert h.grad_norm == pytest.approx(np.linalg.norm(dW), rel=1e-12)
        assert h.update_ratio == pytest.approx(hp.learning_rate * h.grad_norm / h.w_norm, rel=1e-12)
        assert h.dead_fraction is None
        expected = None if h.layer == arch.n_layers else np.mean(np.abs(caches[h.layer - 1].Z) > TANH_SATURATION)
        assert h.saturated_fraction == pytest.approx(expected)


def test_the_update_ratio_uses_the_epochs_decayed_learning_rate(digits) -> None:
    X, y, _, _ = digits
    result = fit(X, y, Architecture.build(64, 10, (16,)), replace(HP, lr_decay=1.0), seed=0)
    for log in result.history:
        for h in log.health:
            assert h.update_ratio == pytest.approx(log.learning_rate * h.grad_norm / h.w_norm, rel=1e-12)
    assert result.history[2].learning_rate == pytest.approx(HP.learning_rate / 3)


def test_dead_and_saturated_units_are_counted_on_the_last_batch() -> None:
    X = np.array([[5.0, 1.0, -5.0, 0.0], [3.0, 0.5, 4.5, -4.1]])  # with W1 = I and b1 = 0, Z1 = X

    def health(activation: str, b1: tuple[float, float] = (0.0, 0.0)) -> tuple[LayerHealth, ...]:
        arch = Architecture((2, 2, 3), activation, "xavier")
        weights = initialize(arch, np.random.default_rng(0))
        weights["W1"], weights["b1"] = np.eye(2), np.array([[b1[0]], [b1[1]]])
        ZL, caches = forward(X, weights, arch)
        grads = backward(ZL, encode_labels(np.array([0, 1, 2, 0]), arch), caches, weights, arch)
        return layer_health(weights, grads, caches, arch, 0.1, 0.0, X.shape[1])

    relu = health("relu", b1=(0.0, -100.0))  # the second unit is never positive: dead
    assert relu[0].dead_fraction == 0.5 and relu[0].saturated_fraction is None
    assert relu[1].dead_fraction is None and relu[1].saturated_fraction is None  # the output layer
    assert health("leaky_relu")[0].dead_fraction == 0.0
    sigmoid, tanh = health("sigmoid")[0], health("tanh")[0]
    assert SIGMOID_SATURATION == 4.0 and sigmoid.saturated_fraction == 4 / 8  # 5, -5, 4.5, -4.1
    assert TANH_SATURATION == 2.0 and tanh.saturated_fraction == 5 / 8  # and 3
    assert sigmoid.dead_fraction is None


def test_zero_weights_give_a_zero_or_infinite_update_ratio() -> None:
    arch = Architecture((3, 4, 3), "sigmoid", "zeros")
    weights = initialize(arch, np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((3, 5))
    ZL, caches = forward(X, weights, arch)
    grads = backward(ZL, encode_labels(np.array([0, 1, 2, 0, 1]), arch), caches, weights, arch)
    first, last = layer_health(weights, grads, caches, arch, 0.1, 0.0, 5)
    assert (first.w_norm, first.grad_norm, first.update_ratio) == (0.0, 0.0, 0.0)  # nothing reaches W1
    assert last.w_norm == 0.0 and last.grad_norm > 0 and last.update_ratio == math.inf


def test_a_deep_sigmoid_network_at_small_random_weights_shows_vanishing_update_ratios(digits) -> None:
    X, y, _, _ = digits
    hp = FitOptions(learning_rate=0.1, epochs=3, batch_size=64, optimizer="gd")

    def ratios(activation: str, init: str) -> list[float]:
        arch = Architecture.build(64, 10, (32,) * 5, activation, init)
        return [h.update_ratio for h in fit(X, y, arch, hp, seed=0).history[-1].health]

    vanishing = ratios("sigmoid", "random")  # the course's example: 0.01 x normal weights
    assert vanishing[0] < 1e-6 * vanishing[-1]  # measured: 6e-11 against 2e-1
    assert all(a < b for a, b in itertools.pairwise(vanishing))  # shrinking layer by layer
    healthy = ratios("relu", "he")
    assert healthy[0] > 0.1 * healthy[-1]  # measured: 4e-2 against 3e-2


def test_fit_counts_dead_units_from_the_activations_before_backward_overwrites_them(digits, monkeypatch):
    """With relu, fit's backward writes dZ over A: a live unit whose gradient is 0 must not read as dead."""
    X, y = digits[0][:, :700], digits[1][:700] % 2
    arch = Architecture.build(64, 2, (16,))
    start = initialize(arch, np.random.default_rng(0))
    start["W2"][:, 3] = 0.0  # unit 3 feeds nothing forward: its dA, so its dZ, is 0 on every example
    start["b1"][3] = 5.0  # and it is positive on every example: alive
    monkeypatch.setattr(train, "initialize", lambda arch, rng: {k: v.copy() for k, v in start.items()})
    _, caches = forward(X.astype(np.float64), start, arch)
    expected = float(np.mean(caches[0].A.max(axis=1) == 0))  # the dead units of the weights fit starts from
    hp = FitOptions(learning_rate=0.1, epochs=1, batch_size=0, optimizer="gd")  # one step, from these weights
    (log,) = fit(X, y, arch, hp, seed=0).history
    assert log.health[0].dead_fraction == expected  # read after backward, unit 3 would count as dead


def test_with_product_updates_health_still_changes_nothing_and_reads_the_step_before_it(digits, monkeypatch) -> None:
    X, y, Xd, yd = digits
    X, y = X[:, :1250], y[:1250]
    arch = Architecture.build(64, 10, (256, 256))  # W2 has 65536 weights: gradient descent updates it in its product
    hp = replace(HP, optimizer="gd", learning_rate=0.1)
    calls = []
    product_update = train.product_update
    monkeypatch.setattr(train, "product_update", lambda *a: calls.append(a[0].shape) or product_update(*a))
    with_health = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=7)
    assert calls and set(calls) == {(256, 256)} and len(calls) == 3 * 13  # every step of the 3 epochs
    without = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=7, _health=False)
    assert [h.train_cost for h in with_health.history] == [h.train_cost for h in without.history]
    assert all(np.array_equal(with_health.weights[k], without.weights[k]) for k in without.weights)

    # the health numbers are those of the two-pass update's run: the weights the step started
    # from and the gradient backward returns for them, though W2 was updated inside backward
    monkeypatch.setattr(train, "PRODUCT_UPDATE_MIN_SIZE", 10**9)
    two_pass = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=7)
    for a, b in zip(with_health.history, two_pass.history, strict=True):
        for h, g in zip(a.health, b.health, strict=True):
            assert h.w_norm == pytest.approx(g.w_norm, rel=1e-4)
            assert h.grad_norm == pytest.approx(g.grad_norm, rel=1e-3)
            assert h.dead_fraction == pytest.approx(g.dead_fraction, abs=0.02)


def test_the_norms_of_a_large_layer_are_taken_a_block_at_a_time_with_the_same_values(monkeypatch) -> None:
    from pipeline.nn import health

    rng = np.random.default_rng(3)
    W = rng.standard_normal((300, 700)).astype(np.float32)  # 210,000 weights: four blocks, the last partial
    dW = rng.standard_normal((300, 700)).astype(np.float32)
    W0, dW0 = W.copy(), dW.copy()
    w_norm, grad_norm = health._norms(W, dW, 0.3)
    assert np.array_equal(W, W0) and np.array_equal(dW, dW0)  # nothing written
    exact = dW.astype(np.float64) + 0.3 * W.astype(np.float64)
    assert w_norm == pytest.approx(np.linalg.norm(W.astype(np.float64)), rel=1e-6)
    assert grad_norm == pytest.approx(np.linalg.norm(exact), rel=1e-6)
    monkeypatch.setattr(health, "BLOCK", 10**7)  # one block: the one-pass formula, number for number
    assert health._norms(W, dW, 0.3) == (health._norm(W), health._norm(np.add(np.multiply(W, 0.3), dW)))
    assert health._norms(W, dW, 0.0) == (health._norm(W), health._norm(dW))
