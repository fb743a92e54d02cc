"""Gradient checking never cries wolf (kinks, check weights, subsets) and still catches real bugs."""

import numpy as np
import pytest

import pipeline.nn.gradcheck as gradcheck
import pipeline.nn.network as network
from pipeline.nn import Architecture, check_weights, gradient_check, initialize
from pipeline.nn.activations import ACTIVATIONS, DERIVATIVES, relu_backward


def problem(activation: str, n_classes: int, seed: int, hidden: tuple[int, ...] = (4, 3), m: int = 8):
    """The gradcheck command's setting: small normal data, labels at random, check weights."""
    rng = np.random.default_rng(seed)
    arch = Architecture.build(6, n_classes, hidden, activation, "he")
    X = rng.standard_normal((6, m))
    y = rng.integers(0, arch.n_classes, m)
    return arch, X, y, check_weights(arch, rng)


def worst_difference(activation: str, n_classes: int, l2: float, seeds: range) -> float:
    return max(
        gradient_check(X, y, w, arch, l2) for arch, X, y, w in (problem(activation, n_classes, s) for s in seeds)
    )


@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("n_classes", [2, 3])  # a sigmoid and a softmax output
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_passes_for_every_activation_and_output(activation: str, n_classes: int, l2: float) -> None:
    assert worst_difference(activation, n_classes, l2, range(4)) < 1e-7  # fifty seeds: the slow test below


@pytest.mark.slow
def test_passes_for_every_activation_output_and_l2_over_fifty_seeds() -> None:
    for activation in sorted(ACTIVATIONS):
        for n_classes in (2, 3):
            for l2 in (0.0, 0.7):
                assert worst_difference(activation, n_classes, l2, range(50)) < 1e-7, (activation, n_classes, l2)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_passes_on_a_random_subset_of_parameters(activation: str) -> None:
    for seed in range(20):
        arch, X, y, w = problem(activation, 3, seed, hidden=(16, 8))
        assert gradient_check(X, y, w, arch, 0.3, n_checks=25, seed=seed) < 1e-7


@pytest.mark.parametrize("dims", [(1000, 300, 1), (784, 256, 10)])
def test_a_larger_network_with_l2_passes_on_a_subset(dims: tuple[int, ...]) -> None:
    # Re-summing all ~300 thousand squares of the L2 term in every cost read 1.3e-6 and 7e-7 here.
    rng = np.random.default_rng(0)
    arch = Architecture(dims, "relu", "he")
    X, y = rng.standard_normal((dims[0], 8)), rng.integers(0, arch.n_classes, 8)
    assert gradient_check(X, y, check_weights(arch, rng), arch, l2_lambda=1.0, n_checks=40) < 1e-7


def test_a_subset_costs_two_forward_passes_per_checked_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    arch, X, y, w = problem("relu", 3, 0, hidden=(256, 128))  # 35 thousand parameters
    calls = []
    original = gradcheck.forward
    monkeypatch.setattr(gradcheck, "forward", lambda *a: calls.append(1) or original(*a))
    gradient_check(X, y, w, arch, n_checks=30)
    assert len(calls) == 1 + 2 * 30


def test_different_seeds_check_different_subsets_and_the_weights_are_left_alone() -> None:
    arch, X, y, w = problem("tanh", 3, 0, hidden=(16, 8))
    before = {k: v.copy() for k, v in w.items()}
    a = gradient_check(X, y, w, arch, n_checks=10, seed=1)
    assert a == gradient_check(X, y, w, arch, n_checks=10, seed=1)
    assert a != gradient_check(X, y, w, arch, n_checks=10, seed=2)
    for k in w:
        np.testing.assert_array_equal(w[k], before[k])


def test_zero_biases_on_the_relu_kink_pass_because_crossing_parameters_are_skipped(monkeypatch) -> None:
    # the gradcheck command's old case: `--layers 4,3 --activation relu` at zero biases (1.03e-1)
    rng = np.random.default_rng(42)
    arch = Architecture.build(6, 3, (4, 3), "relu", "he")
    X, y = rng.standard_normal((6, 8)), rng.integers(0, 3, 8)
    weights = initialize(arch, rng)
    assert gradient_check(X, y, weights, arch) < 1e-7
    monkeypatch.setattr(gradcheck, "KINKED", ())  # without the skip, the kink dominates
    assert gradient_check(X, y, weights, arch) > 1e-2


def test_a_check_where_every_chosen_parameter_crosses_a_kink_is_an_error() -> None:
    # all-zero weights and biases: every first-layer pre-activation is exactly 0, on the kink
    arch = Architecture.build(4, 3, (3,), "relu", "zeros")
    weights = initialize(arch, np.random.default_rng(0))
    X, y = np.random.default_rng(1).standard_normal((4, 6)), np.array([0, 0, 0, 0, 1, 2])
    first_layer = weights["W1"].size + weights["b1"].size  # flattened first: W1, b1, W2, b2
    seed = next(s for s in range(100) if np.random.default_rng(s).choice(27, size=1)[0] < first_layer)
    with pytest.raises(ValueError, match="kink"):
        gradient_check(X, y, weights, arch, n_checks=1, seed=seed)
    assert gradient_check(X, y, weights, arch) < 1e-7  # the output layer's parameters are still compared


def test_check_weights_initialize_as_the_architecture_says_with_biases_away_from_zero() -> None:
    arch = Architecture.build(30, 4, (40, 20), "relu", "xavier")
    w = check_weights(arch, np.random.default_rng(5))
    plain = initialize(arch, np.random.default_rng(5))
    for l in (1, 2, 3):
        np.testing.assert_array_equal(w[f"W{l}"], plain[f"W{l}"])
    b = np.concatenate([w[f"b{l}"].ravel() for l in (1, 2, 3)])
    assert np.all((np.abs(b) >= 0.1) & (np.abs(b) <= 0.5))
    assert 0.3 < np.mean(b > 0) < 0.7  # both signs
    assert all(w[k].dtype == np.float64 for k in w)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_fails_on_a_planted_backward_bug_for_every_seed(monkeypatch: pytest.MonkeyPatch, activation: str) -> None:
    backward = DERIVATIVES[activation]
    monkeypatch.setattr(network, "DERIVATIVES", {**DERIVATIVES, activation: lambda dA, Z, A: 1.1 * backward(dA, Z, A)})
    for seed in range(10):
        arch, X, y, w = problem(activation, 3, seed)
        assert gradient_check(X, y, w, arch) > 1e-3
        assert gradient_check(X, y, w, arch, n_checks=20, seed=seed) > 1e-3


def test_fails_when_relu_backward_passes_gradient_through_dead_units(monkeypatch: pytest.MonkeyPatch) -> None:
    def leaking(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
        through_dead = 0.05 * dA * (Z <= 0)  # before relu_backward overwrites dA
        return relu_backward(dA, Z, A) + through_dead

    monkeypatch.setattr(network, "DERIVATIVES", {**DERIVATIVES, "relu": leaking})
    assert min(gradient_check(X, y, w, arch) for arch, X, y, w in (problem("relu", 2, s) for s in range(10))) > 1e-4


def test_fails_when_the_l2_gradient_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "l2_gradient_scale", lambda name, l2_lambda, m: 0.0)
    for seed in range(10):
        arch, X, y, w = problem("tanh", 3, seed)
        assert gradient_check(X, y, w, arch, l2_lambda=0.0) < 1e-7  # no L2: nothing is missing
        assert gradient_check(X, y, w, arch, l2_lambda=0.7) > 1e-2
