"""The training loop: determinism, optimizers, L2, early stopping, callbacks, divergence."""

from dataclasses import replace

import numpy as np
import pytest

import pipeline.nn.train as train
from pipeline.data.sources import digits_arrays
from pipeline.nn import (
    Architecture,
    Diverged,
    EpochLog,
    FitOptions,
    backward,
    compute_cost,
    encode_labels,
    error_rate,
    fit,
    forward,
    gradient_check,
    initialize,
    predict_proba,
)
from pipeline.nn.network import l2_penalty
from pipeline.report.stats import wilson_interval


@pytest.fixture(scope="module")
def digits():
    data, target = digits_arrays()
    X = (data / 16.0).T  # (64, 1797), examples as columns
    return X[:, :1200], target[:1200], X[:, 1200:], target[1200:]


HP = FitOptions(learning_rate=0.01, epochs=8, batch_size=64, optimizer="adam", keep_prob=0.9)


def test_same_seed_gives_bit_identical_results_and_another_seed_does_not(digits) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 10, (16,))
    a = fit(X, y, arch, HP, X_dev=Xd, y_dev=yd, seed=3)
    b = fit(X, y, arch, HP, X_dev=Xd, y_dev=yd, seed=3)
    c = fit(X, y, arch, HP, X_dev=Xd, y_dev=yd, seed=4)
    for name in a.weights:
        assert np.array_equal(a.weights[name], b.weights[name])
    assert [h.train_cost for h in a.history] == [h.train_cost for h in b.history]
    assert not np.array_equal(a.weights["W1"], c.weights["W1"])
    assert a.history[-1].train_cost != c.history[-1].train_cost


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_every_optimizer_lowers_the_cost_and_keeps_the_dtype(digits, optimizer: str, dtype: str) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (32,), dtype=dtype)
    lr = {"gd": 0.5, "momentum": 0.5, "adam": 0.01}[optimizer]
    hp = replace(HP, optimizer=optimizer, learning_rate=lr, keep_prob=1.0)
    result = fit(X, y, arch, hp, seed=0)
    assert result.history[-1].train_cost < 0.5 * result.history[0].train_cost
    assert all(w.dtype == np.dtype(dtype) for w in result.weights.values())


def test_float32_reaches_the_dev_error_of_float64_within_its_interval(digits) -> None:
    """The default dtype is float32 (faster): on digits it must learn as well as float64 does."""
    X, y, Xd, yd = digits
    hp = FitOptions(learning_rate=0.001, epochs=30, batch_size=64, optimizer="adam")  # params.yaml's optimizer
    errors = {}
    for dtype in ("float32", "float64"):
        arch = Architecture.build(64, 10, (64, 32), dtype=dtype)
        errors[dtype] = error_rate(Xd, yd, fit(X, y, arch, hp, seed=0).weights, arch)
    n = len(yd)
    low, high = wilson_interval(round(errors["float64"] * n), n)
    assert low <= errors["float32"] <= high, errors
    assert errors["float64"] < 0.1  # both learned: digits at 30 epochs is well below 10% error


def test_full_batch_and_binary_output(digits) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 2, (8,))
    hp = replace(HP, batch_size=0, epochs=150, optimizer="gd", learning_rate=0.5, keep_prob=1.0)
    odd = y % 2
    result = fit(X, odd, arch, hp, X_dev=Xd, y_dev=yd % 2, seed=0)
    assert error_rate(Xd, yd % 2, result.weights, arch) < 0.2
    assert result.history[-1].dev_error == pytest.approx(error_rate(Xd, yd % 2, result.weights, arch))


def test_a_larger_lambda_gives_smaller_weights(digits) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (32,))
    norms = []
    for lam in (0.0, 1.0, 10.0):
        w = fit(X, y, arch, replace(HP, l2_lambda=lam, keep_prob=1.0, epochs=15), seed=0).weights
        norms.append(sum(float(np.sum(w[k] ** 2)) for k in w if k.startswith("W")))
    assert norms[0] > norms[1] > norms[2]


def test_callbacks_see_every_epoch_and_can_stop_training(digits) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 10, (16,))
    seen: list[EpochLog] = []

    class Stop(Exception):
        pass

    def stop_at_three(log: EpochLog) -> None:
        seen.append(log)
        if log.epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        fit(X, y, arch, HP, X_dev=Xd, y_dev=yd, callbacks=[stop_at_three])
    assert [log.epoch for log in seen] == [1, 2, 3]
    assert all(log.dev_cost is not None and 0 <= log.dev_error <= 1 for log in seen)


def test_early_stopping_restores_the_best_dev_weights(digits) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 10, (64,))
    # a large learning rate with no regularization overfits quickly, so dev cost turns up
    hp = replace(HP, learning_rate=0.03, epochs=60, patience=3, keep_prob=1.0)
    result = fit(X[:, :300], y[:300], arch, hp, X_dev=Xd, y_dev=yd, seed=0)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + hp.patience
    best = result.history[result.best_epoch - 1]
    assert best.dev_cost == min(h.dev_cost for h in result.history)
    assert error_rate(Xd, yd, result.weights, arch) == pytest.approx(best.dev_error)


def test_divergence_raises_with_the_epoch_and_a_remedy(digits) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (32,), dtype="float32")  # float32 overflows to inf, then nan
    hp = replace(HP, optimizer="gd", learning_rate=1e12, keep_prob=1.0)
    with pytest.raises(Diverged, match="lower the learning rate") as info:
        fit(X, y, arch, hp, seed=0)
    assert info.value.epoch >= 1 and not np.isfinite(info.value.cost)


def test_learning_rate_decay_follows_the_schedule(digits) -> None:
    X, y, _, _ = digits
    result = fit(X, y, Architecture.build(64, 10, (8,)), replace(HP, lr_decay=1.0, epochs=3), seed=0)
    assert [h.learning_rate for h in result.history] == pytest.approx([0.01, 0.005, 0.01 / 3])


def test_train_params_validate_their_values() -> None:
    with pytest.raises(ValueError, match="keep_prob"):
        FitOptions(keep_prob=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        FitOptions(optimizer="sgd")


def fit_start(arch: Architecture) -> dict[str, np.ndarray]:
    """The weights fit starts from with seed 0 (its init stream)."""
    return initialize(arch, np.random.default_rng(0).spawn(3)[0])


def test_train_cost_is_the_batch_cross_entropy_plus_the_l2_term_at_the_epoch_end(digits) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (16,))
    hp = replace(HP, batch_size=0, epochs=1, optimizer="gd", learning_rate=0.1, keep_prob=1.0, l2_lambda=0.5)
    result = fit(X, y, arch, hp, seed=0)
    start = fit_start(arch)
    cross_entropy = compute_cost(forward(X, start, arch)[0], encode_labels(y, arch), arch, start)
    expected = cross_entropy + l2_penalty(result.weights, hp.l2_lambda, X.shape[1])
    assert result.history[0].train_cost == pytest.approx(expected, rel=1e-12)


def test_the_train_cost_l2_term_uses_each_steps_batch_size_the_last_partial_batch_included(digits) -> None:
    X, y, _, _ = digits  # 1200 examples in batches of 500, 500 and 200
    arch = Architecture.build(64, 10, (16,))
    # a learning rate so small that the weights stay put: every batch is costed at the initial weights
    hp = replace(HP, batch_size=500, epochs=1, optimizer="gd", learning_rate=1e-12, keep_prob=1.0, l2_lambda=50.0)
    result = fit(X, y, arch, hp, seed=0)
    start = fit_start(arch)
    cross_entropy = compute_cost(forward(X, start, arch)[0], encode_labels(y, arch), arch, start)
    # mean over examples of each step's CE_b + lambda/(2 m_b) S: 500/1200 * S/(2*500) * 2 + 200/1200 * S/(2*200)
    per_step_l2 = sum(m_b / 1200 * l2_penalty(start, hp.l2_lambda, m_b) for m_b in (500, 500, 200))
    assert per_step_l2 == pytest.approx(3 * l2_penalty(start, hp.l2_lambda, 1200))
    assert result.history[0].train_cost == pytest.approx(cross_entropy + per_step_l2, rel=1e-9)


def test_with_l2_the_dev_cost_is_the_plain_cross_entropy_of_the_dev_predictions(digits) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 10, (16,))
    hp = replace(HP, epochs=3, l2_lambda=1.0, patience=5)
    result = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=0)
    P = predict_proba(Xd, result.weights, arch)  # (10, m_dev)
    cross_entropy = float(-np.mean(np.log(P[yd, np.arange(yd.size)])))
    assert result.history[-1].dev_cost == pytest.approx(cross_entropy, rel=1e-9)  # the L2 term would be ~0.04


@pytest.mark.parametrize("optimizer,factor", [("gd", 1.0), ("momentum", 1 - HP.beta1)])
def test_a_step_with_l2_follows_the_gradient_that_gradcheck_validates(digits, optimizer: str, factor: float) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (16,))
    hp = replace(HP, batch_size=0, epochs=1, optimizer=optimizer, learning_rate=0.1, keep_prob=1.0, l2_lambda=2.0)
    after = fit(X, y, arch, hp, seed=0).weights
    start = fit_start(arch)
    ZL, caches = forward(X, start, arch)
    grads = backward(ZL, encode_labels(y, arch), caches, start, arch, hp.l2_lambda)
    assert gradient_check(X[:, :30], y[:30], start, arch, hp.l2_lambda, n_checks=40) < 1e-7
    for name in start:  # momentum's first step: v = (1 - beta) g
        np.testing.assert_allclose(after[name], start[name] - hp.learning_rate * factor * grads["d" + name], atol=1e-13)


@pytest.mark.parametrize(("dtype", "copied"), [("float32", False), ("float64", True)])
def test_a_memory_mapped_split_in_the_networks_dtype_is_trained_on_without_a_copy(tmp_path, dtype, copied) -> None:
    """The split files are float32 rows; X.T of their memory map is what every trial passes to fit.

    In float32 fit computes on the map itself, so N workers share one copy of the data through the
    page cache; only mini-batches are gathered. A float64 network has to convert: a whole copy.
    """
    import tracemalloc

    rng = np.random.default_rng(0)
    m, n_x = 5_000, 784  # 16 MB of float32: a copy stands out against 0.8 MB batches
    np.save(tmp_path / "X.npy", rng.standard_normal((m, n_x), dtype=np.float32))
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = rng.integers(0, 10, m)
    arch = Architecture.build(n_x, 10, (8,), dtype=dtype)
    hp = FitOptions(learning_rate=0.01, epochs=1, batch_size=256, optimizer="adam")
    tracemalloc.start()
    try:
        fit(X.T, y, arch, hp, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = X.nbytes
    assert (peak >= whole) is copied, f"peak {peak / 1e6:.1f} MB against the data's {whole / 1e6:.1f} MB"


@pytest.mark.parametrize("activation,keep_prob", [("relu", 1.0), ("relu", 0.8), ("tanh", 0.8)])
def test_gradient_descent_on_large_layers_updates_in_the_product_as_the_two_pass_step_would(
    digits, activation: str, keep_prob: float, monkeypatch
) -> None:
    X, y, Xd, yd = digits
    arch = Architecture.build(64, 10, (300, 256), hidden_activation=activation)  # W2: 76800 weights
    hp = replace(HP, optimizer="gd", learning_rate=0.1, epochs=3, batch_size=100, l2_lambda=0.5, keep_prob=keep_prob)
    used = []
    product_update = train.product_update
    monkeypatch.setattr(train, "product_update", lambda *a: used.append(1) or product_update(*a))
    fused = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=2)
    assert len(used) == 3 * 12
    monkeypatch.setattr(train, "PRODUCT_UPDATE_MIN_SIZE", 10**9)  # every layer by the optimizer's step
    two_pass = fit(X, y, arch, hp, X_dev=Xd, y_dev=yd, seed=2)
    assert len(used) == 3 * 12
    assert not np.array_equal(fused.weights["W2"], two_pass.weights["W2"])  # rounded otherwise...
    for name in fused.weights:  # ...the same training
        np.testing.assert_allclose(fused.weights[name], two_pass.weights[name], rtol=1e-6, atol=1e-8)
    costs = [h.train_cost for h in fused.history], [h.train_cost for h in two_pass.history]
    np.testing.assert_allclose(*costs, rtol=1e-9)


def test_without_numpys_blas_gradient_descent_falls_back_to_the_two_pass_step(digits, monkeypatch) -> None:
    X, y, _, _ = digits
    arch = Architecture.build(64, 10, (300, 256))
    hp = replace(HP, optimizer="gd", learning_rate=0.1, epochs=2, batch_size=100, keep_prob=1.0)
    monkeypatch.setattr(train, "product_update_available", lambda dtype: False)  # another BLAS, say
    monkeypatch.setattr(train, "product_update", None)  # calling it would raise
    fallback = fit(X, y, arch, hp, seed=2)
    monkeypatch.setattr(train, "PRODUCT_UPDATE_MIN_SIZE", 10**9)
    assert all(np.array_equal(fallback.weights[k], v) for k, v in fit(X, y, arch, hp, seed=2).weights.items())
