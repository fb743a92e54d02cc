"""Activations and output losses as small name-to-function tables.

Each hidden activation has its forward function next to its backward one. A forward function
writes into ``out`` when given one (``fit`` passes arrays it reuses every step) and allocates
otherwise. A backward function takes the upstream gradient ``dA`` and the cached ``Z`` and ``A``
(the activation's output before dropout) and returns ``dZ``; it may overwrite ``dA`` because
nothing else reads it.

The output layer never materialises log(A): losses are computed from the last pre-activation
``Z`` with log-sum-exp identities, so saturated outputs give a finite cost in float32 and
float64 and raise no overflow warnings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEAKY_SLOPE = 0.01


def relu(Z: np.ndarray, out: np.ndarray | None = None, zeros: np.ndarray | None = None) -> np.ndarray:
    # max(Z, 0): the same values as Z * (Z > 0), but +0.0 where that gave -0.0, and 0 for Z = -inf.
    # ``zeros``, an array of zeros shaped like Z (fit's StepBuffers.zeros): numpy 2.4 runs
    # maximum(array, array) in a SIMD loop but maximum(array, scalar) element by element (the
    # same values); full-batch digits epochs are 14-16 % shorter for it (bench_core --phases,
    # docs/benchmarks.md)
    return np.maximum(Z, 0 if zeros is None else zeros, out=out)


def relu_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    # Z here is relu(Z) (OVERWRITES_Z), which is > 0 exactly where Z was, NaN included.
    dA *= Z > 0  # multiplying by the 0/1 mask is ~15x faster than boolean assignment dA[Z <= 0] = 0
    return dA


def leaky_relu(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(Z, LEAKY_SLOPE, out=out)  # np.where(Z > 0, Z, Z * LEAKY_SLOPE), in place
    np.copyto(out, Z, where=Z > 0)
    return out


def leaky_relu_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    one, slope = dA.dtype.type(1), dA.dtype.type(LEAKY_SLOPE)
    dA *= np.where(Z > 0, one, slope)
    return dA


def tanh(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(Z, out=out)


def tanh_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    dA *= 1 - A * A  # tanh' = 1 - tanh^2
    return dA


def sigmoid(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # 1/(1+exp(-Z)) overflows exp for very negative Z; 0.5*(1+tanh(Z/2)) is the same and never does
    out = np.multiply(Z, 0.5, out=out)  # 0.5 * (1 + tanh(0.5 * Z)), the same operations in place
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def sigmoid_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    dA *= A * (1 - A)  # sigmoid' = s (1 - s)
    return dA


# Hidden activations that the forward pass computes in place, A written over Z, so that one array
# is both in the caches: their backward (and the health numbers, the gradient check's kinks) read
# only where Z > 0, which relu(Z) keeps. One array fewer per layer to write and read back keeps a
# step's activations in the CPU's caches: shorter full-batch digits epochs in the bench_core runs
# of docs/benchmarks.md, the same numbers. (leaky_relu's in-place form is another formula.)
OVERWRITES_Z = frozenset({"relu"})

Forward = Callable[..., np.ndarray]  # (Z, out=None) -> A; relu also takes zeros=
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

ACTIVATIONS: dict[str, Forward] = {"relu": relu, "leaky_relu": leaky_relu, "tanh": tanh, "sigmoid": sigmoid}
DERIVATIVES: dict[str, Backward] = {
    "relu": relu_backward,
    "leaky_relu": leaky_relu_backward,
    "tanh": tanh_backward,
    "sigmoid": sigmoid_backward,
}


# --- output layers: probabilities and cross-entropy, both from the logits Z (n_out, m) -----------


def softmax(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    E = np.subtract(Z, Z.max(axis=0, keepdims=True), out=out)
    np.exp(E, out=E)
    E /= E.sum(axis=0, keepdims=True)
    return E


def binary_cross_entropy(Z: np.ndarray, Y: np.ndarray) -> float:
    """Mean of -[y log s(z) + (1-y) log(1-s(z))] = mean of max(z,0) - z y + log(1 + e^-|z|)."""
    loss = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    return float(loss.sum(dtype=np.float64) / Z.shape[1])


def categorical_cross_entropy(Z: np.ndarray, Y: np.ndarray) -> float:
    """Mean of -sum_k y_k log softmax(z)_k, with log softmax = z - max - log sum exp(z - max)."""
    shifted = Z - Z.max(axis=0, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
    return float(-(Y * log_probs).sum(dtype=np.float64) / Z.shape[1])


# For both pairs dCost/dZ = (probabilities - Y) / m, which is why backprop starts from the logits.
OUTPUTS: dict[str, tuple[Forward, Callable[[np.ndarray, np.ndarray], float]]] = {
    "sigmoid": (sigmoid, binary_cross_entropy),
    "softmax": (softmax, categorical_cross_entropy),
}
