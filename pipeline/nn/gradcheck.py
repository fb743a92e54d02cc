"""Gradient checking: backprop against two-sided finite differences of the cost."""

from __future__ import annotations

import numpy as np

from pipeline.nn.network import Architecture, Weights, backward, compute_cost, encode_labels, forward


def weights_to_vector(weights: Weights) -> np.ndarray:
    return np.concatenate([weights[k].ravel() for k in sorted_keys(weights)])


def vector_to_weights(theta: np.ndarray, like: Weights) -> Weights:
    out, start = {}, 0
    for k in sorted_keys(like):
        size = like[k].size
        out[k] = theta[start : start + size].reshape(like[k].shape)
        start += size
    return out


def sorted_keys(weights: Weights) -> list[str]:
    """W1, b1, W2, b2, ...: the order parameters are flattened in."""
    n = len(weights) // 2
    return [f"{p}{l}" for l in range(1, n + 1) for p in ("W", "b")]


def gradient_check(
    X: np.ndarray, y: np.ndarray, weights: Weights, arch: Architecture, l2_lambda: float = 0.0, epsilon: float = 1e-7
) -> float:
    """Relative difference ||g_num - g|| / (||g_num|| + ||g||) over all parameters (dropout off)."""
    X = X.astype(arch.dtype)
    Y = encode_labels(y, arch)
    ZL, caches = forward(X, weights, arch)
    grads = backward(ZL, Y, caches, weights, arch, l2_lambda)
    g = np.concatenate([grads["d" + k].ravel() for k in sorted_keys(weights)])

    theta = weights_to_vector(weights)
    g_num = np.empty_like(theta)
    for i in range(theta.size):
        costs = []
        for step in (epsilon, -epsilon):
            shifted = theta.copy()
            shifted[i] += step
            w = vector_to_weights(shifted, weights)
            costs.append(compute_cost(forward(X, w, arch)[0], Y, arch, w, l2_lambda))
        g_num[i] = (costs[0] - costs[1]) / (2 * epsilon)
    denominator = np.linalg.norm(g_num) + np.linalg.norm(g)
    return float(np.linalg.norm(g_num - g) / denominator) if denominator else 0.0
