"""Gradient checking: backprop against two-sided finite differences of the cost.

A check that never cries wolf. ReLU and leaky ReLU have a kink at Z = 0, where the derivative
jumps: a finite difference whose +-epsilon perturbation moves some pre-activation across 0
measures neither side's derivative, and one such coordinate can dominate the relative difference
(with zero biases, an example whose layer below is all dead has Z = b = 0 exactly, on the kink).
Two defences, both documented on the functions:

- ``check_weights`` evaluates away from the kinks: the architecture's initialization plus random
  non-zero biases, so pre-activations are not 0 by construction.
- ``gradient_check`` skips every coordinate whose perturbation changes the sign of any hidden
  pre-activation on any example (compared exactly, from the caches of the perturbed forward
  passes). Smooth activations (tanh, sigmoid) and the output layer have no kinks: nothing is skipped.
"""

from __future__ import annotations

import numpy as np

from pipeline.nn.network import (
    Architecture,
    Weights,
    backward,
    compute_cost,
    encode_labels,
    forward,
    initialize,
    l2_penalty,
)

KINKED = ("relu", "leaky_relu")  # hidden activations whose derivative jumps at Z = 0
CHECK_BIAS_RANGE = (0.1, 0.5)  # |b| of check_weights' biases: pre-activations well away from 0


def parameter_order(weights: Weights) -> list[str]:
    """W1, b1, W2, b2, ...: the order parameters are flattened in."""
    n = len(weights) // 2
    return [f"{p}{l}" for l in range(1, n + 1) for p in ("W", "b")]


def check_weights(arch: Architecture, rng: np.random.Generator) -> Weights:
    """Weights initialized as ``arch.init`` says, then biases drawn uniformly from +-[0.1, 0.5].

    With zero biases pre-activations can sit exactly on ReLU's kink (see the module docstring);
    these biases move them away, so a gradient check at these weights measures the derivative.
    """
    weights = initialize(arch, rng)
    low, high = CHECK_BIAS_RANGE
    for l in range(1, arch.n_layers + 1):
        shape = weights[f"b{l}"].shape
        magnitude = rng.uniform(low, high, shape)
        weights[f"b{l}"] = (magnitude * rng.choice(np.array([-1.0, 1.0]), shape)).astype(arch.dtype)
    return weights


def gradient_check(
    X: np.ndarray,
    y: np.ndarray,
    weights: Weights,
    arch: Architecture,
    l2_lambda: float = 0.0,
    epsilon: float = 1e-7,
    *,
    n_checks: int | None = None,
    seed: int = 0,
) -> float:
    """Relative difference ||g_num - g|| / (||g_num|| + ||g||) of backprop against finite differences.

    Dropout is off; the L2 term is in both the cost and the gradient (in the cost differences, as
    the perturbed weight's own term: the others cancel). ``n_checks``: compare that many
    parameters drawn at random (seeded by ``seed``) instead of all, so that a large network checks
    in a fraction of a second (a 1.7M-parameter one, 8 examples, 50 checks: 0.7 s on one busy
    core: two forward passes per checked parameter). Parameters whose finite difference crosses a ReLU
    or leaky-ReLU kink are skipped (module docstring); ValueError if that leaves none to compare.
    ``weights`` is not modified. Floor: at epsilon = 1e-7 float64 rounding leaves each difference
    quotient about 1e-16 * cost / epsilon off, so a network whose gradient norm is near 1e-2 (a
    sigmoid network on random labels) reads up to ~8e-8 when correct; a real bug reads 1e-3 or more.
    """
    X = np.asfortranarray(X, dtype=arch.dtype)
    Y = encode_labels(y, arch)
    ZL, caches = forward(X, weights, arch)
    grads = backward(ZL, Y, caches, weights, arch, l2_lambda)
    signs = [cache.Z > 0 for cache in caches[:-1]] if arch.hidden_activation in KINKED else []

    keys = parameter_order(weights)
    offsets = np.cumsum([0] + [weights[k].size for k in keys])
    total = int(offsets[-1])
    if n_checks is None or n_checks >= total:
        chosen = np.arange(total)
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=n_checks, replace=False))

    work = {k: W.copy() for k, W in weights.items()}  # perturbed in place, one parameter at a time
    analytic, numeric = [], []
    for i in chosen:
        j = int(np.searchsorted(offsets, i, side="right")) - 1
        key, index = keys[j], int(i - offsets[j])
        flat = work[key].reshape(-1)  # a view: the copies are contiguous
        original = flat[index]
        costs, crossed = [], False
        for step in (epsilon, -epsilon):
            flat[index] = original + step
            ZL_shifted, shifted = forward(X, work, arch)
            # The L2 term changes only by the perturbed parameter's own square, so that is the part
            # evaluated: re-summing every square would bury a 1e-7 change under the rounding of a sum
            # of millions (2.7e-7 instead of 4e-8 measured on a 3072-512-256-1 network, 100 checks).
            own = {key: flat[index : index + 1]}  # l2_penalty skips biases by their name, as in the cost
            costs.append(compute_cost(ZL_shifted, Y, arch, work) + l2_penalty(own, l2_lambda, X.shape[1]))
            # zip stops at the hidden layers' caches (signs is empty for smooth activations)
            crossed = crossed or any(not np.array_equal(c.Z > 0, s) for c, s in zip(shifted, signs, strict=False))
        flat[index] = original
        if crossed:
            continue
        numeric.append((costs[0] - costs[1]) / (2 * epsilon))
        analytic.append(grads["d" + key].reshape(-1)[index])
    if not numeric:
        raise ValueError(f"all {chosen.size} checked parameters cross a ReLU kink: check at check_weights(arch, rng)")
    g_num, g = np.array(numeric), np.array(analytic)
    denominator = np.linalg.norm(g_num) + np.linalg.norm(g)
    return float(np.linalg.norm(g_num - g) / denominator) if denominator else 0.0
