"""An L-layer fully connected network: initialization, forward, cost, backward, prediction.

Shape convention (the course's, stated once): examples are columns.
    X: (n_x, m)    W[l]: (n[l], n[l-1])    b[l]: (n[l], 1)    Z[l], A[l]: (n[l], m)
Labels ``y`` are integers of shape (m,); ``encode_labels`` turns them into Y of shape (n_out, m):
one row of 0/1 for a sigmoid output (n_out == 1), one-hot columns for a softmax output.

Memory layout: Z, A and dA are stored example by example (Fortran order, each column
contiguous), the layout of ``X.T`` for the row-major data files. OpenBLAS runs the skinny
products of small hidden layers 10-15 % faster this way than with row-major activations
(docs/benchmarks.md); weights and their gradients stay row-major.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipeline.nn.activations import ACTIVATIONS, DERIVATIVES, OUTPUTS, OVERWRITES_Z

Weights = dict[str, np.ndarray]  # "W1", "b1", ..., "WL", "bL"

# Scale of each initializer's normal draws, given the layer's fan-in (the course's recipes).
INITIALIZERS = {
    "zeros": lambda fan_in: 0.0,
    "random": lambda fan_in: 0.01,
    "xavier": lambda fan_in: np.sqrt(1.0 / fan_in),
    "he": lambda fan_in: np.sqrt(2.0 / fan_in),
}


@dataclass(frozen=True)
class Architecture:
    """Layer sizes ``(n_x, n_1, ..., n_out)`` and the choices that shape the network."""

    layer_dims: tuple[int, ...]
    hidden_activation: str = "relu"
    init: str = "he"
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if len(self.layer_dims) < 2 or min(self.layer_dims) < 1:
            raise ValueError(f"layer_dims must hold at least input and output sizes >= 1, got {self.layer_dims}")
        if self.layer_dims[-1] == 2:
            raise ValueError("two classes use one sigmoid output unit: set the output size to 1")
        for name, table in (("hidden_activation", ACTIVATIONS), ("init", INITIALIZERS)):
            if getattr(self, name) not in table:
                raise ValueError(f"unknown {name} '{getattr(self, name)}'; choose one of {', '.join(table)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")

    @classmethod
    def build(
        cls,
        n_x: int,
        n_classes: int,
        hidden_layers: tuple[int, ...] = (),
        hidden_activation: str = "relu",
        init: str = "he",
        dtype: str = "float64",
    ) -> Architecture:
        n_out = 1 if n_classes == 2 else n_classes
        return cls((n_x, *hidden_layers, n_out), hidden_activation, init, dtype)

    @property
    def n_layers(self) -> int:
        """Number of weight layers L (hidden layers plus the output layer)."""
        return len(self.layer_dims) - 1

    @property
    def output(self) -> str:
        return "sigmoid" if self.layer_dims[-1] == 1 else "softmax"

    @property
    def n_classes(self) -> int:
        return 2 if self.layer_dims[-1] == 1 else self.layer_dims[-1]


def columns_product(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A @ B, stored column by column (Fortran order) like the activations; into ``out`` if given."""
    if out is None:
        out = np.empty((A.shape[0], B.shape[1]), np.result_type(A, B), order="F")
    if A.shape[1] == 1:  # an outer product (W.T @ dZ below a single output unit): the same exact
        # products, ~3x faster than a BLAS call with inner size 1; einsum's loop fills the column-major
        # result faster than a broadcast multiply does (bench_core digits, docs/benchmarks.md)
        return np.einsum("i,j->ij", A[:, 0], B[0], out=out)
    return np.matmul(A, B, out=out)


class LayerCache(NamedTuple):
    A_prev: np.ndarray  # the layer's input (after the previous layer's dropout)
    Z: np.ndarray  # for an activation in OVERWRITES_Z (relu), the same array as A: relu(Z)
    A: np.ndarray | None  # activation before dropout; None for the output layer
    mask: np.ndarray | None  # inverted-dropout mask already divided by keep_prob, or None


@dataclass(frozen=True)
class StepBuffers:
    """The arrays one training step writes, allocated once by ``fit`` and reused by every step.

    Each holds ``batch`` columns in the activations' layout; ``columns(k)`` views the first k
    (the last, partial batch): for Fortran order those are contiguous, so the products see the
    same layout either way. Fresh arrays of this size every step cost allocation and page faults
    on top of the arithmetic; reuse is safe because a step's caches are read only before its
    backward pass (the health numbers of units, ``exploded_layer``) and by it.

    For relu (OVERWRITES_Z) one array per hidden layer holds Z[l], A[l] and then, in backward,
    dA[l] and dZ[l]: backward reads A[l] last for its sign (kept in ``signs``), so the gradient
    can take its place. Fewer arrays per step keep them in the CPU's caches (bench_core digits,
    docs/benchmarks.md), with the same numbers.
    """

    Z: tuple[np.ndarray, ...]  # per layer: Z[l], (n[l], batch); relu: also A[l], dA[l], dZ[l]
    A: tuple[np.ndarray, ...]  # per hidden layer: A[l] before dropout; none for relu
    dA: tuple[np.ndarray, ...]  # per hidden layer: dA[l], turned into dZ[l] by backward; none for relu
    signs: tuple[np.ndarray, ...]  # relu, per hidden layer: A[l] > 0 (bool), taken before dA[l] overwrites A[l]
    zeros: tuple[np.ndarray, ...]  # relu, per hidden layer: zeros shaped like Z[l] (views of one array, never written)
    spare: tuple[np.ndarray, ...]  # relu with product updates, per hidden layer: dA[l] (views of one array); else none
    dZ: np.ndarray  # the output layer's dZ[L]
    ones: np.ndarray  # (batch, 1): the bias gradients' row sums as products

    @classmethod
    def allocate(cls, arch: Architecture, batch: int, spare: bool = False) -> StepBuffers:
        def empty(n: int) -> np.ndarray:
            return np.empty((n, batch), dtype=arch.dtype, order="F")

        hidden = arch.layer_dims[1:-1]
        shared = arch.hidden_activation in OVERWRITES_Z
        # one array of zeros as large as the widest layer; each layer's view is its first n * batch
        # elements in column order, so it is contiguous, as is its first k columns in ``columns``
        zeros = np.zeros(max(hidden, default=0) * batch if shared else 0, dtype=arch.dtype)
        spares = np.empty(max(hidden, default=0) * batch if shared and spare else 0, dtype=arch.dtype)
        return cls(
            Z=tuple(empty(n) for n in arch.layer_dims[1:]),
            A=() if shared else tuple(empty(n) for n in hidden),
            dA=() if shared else tuple(empty(n) for n in hidden),
            signs=tuple(np.empty((n, batch), dtype=bool, order="F") for n in hidden) if shared else (),
            zeros=tuple(zeros[: n * batch].reshape((n, batch), order="F") for n in hidden) if shared else (),
            spare=tuple(spares[: n * batch].reshape((n, batch), order="F") for n in hidden) if spares.size else (),
            dZ=empty(arch.layer_dims[-1]),
            ones=np.ones((batch, 1), dtype=arch.dtype),
        )

    def columns(self, k: int) -> StepBuffers:
        if k == self.ones.shape[0]:
            return self

        def first(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            return tuple(a[:, :k] for a in arrays)

        return StepBuffers(
            first(self.Z),
            first(self.A),
            first(self.dA),
            first(self.signs),
            first(self.zeros),
            first(self.spare),
            self.dZ[:, :k],
            self.ones[:k],
        )


def initialize(arch: Architecture, rng: np.random.Generator) -> Weights:
    """Normal weights scaled by each layer's fan-in; zero biases."""
    scale = INITIALIZERS[arch.init]
    weights: Weights = {}
    for l in range(1, arch.n_layers + 1):
        fan_in, fan_out = arch.layer_dims[l - 1], arch.layer_dims[l]
        weights[f"W{l}"] = (rng.standard_normal((fan_out, fan_in)) * scale(fan_in)).astype(arch.dtype)
        weights[f"b{l}"] = np.zeros((fan_out, 1), dtype=arch.dtype)
    return weights


def grouped(arrays: Weights) -> tuple[Weights, Weights]:
    """Copies of ``arrays`` that are views into one flat array per kind of name ("W1", "W2" -> "W").

    Returns (the views, by the same names; the flat arrays, by kind). ``fit`` hands the flat
    arrays to the optimizer: an update is a dozen elementwise calls per array, each costing a few
    microseconds whatever its size, so one array for all weights and one for all biases cut an
    Adam epoch of a small network at batch 64 by about a quarter (bench_core, docs/benchmarks.md),
    with the same numbers (elementwise arithmetic does not depend on the layout).
    """
    kinds: dict[str, list[str]] = {}
    for name in arrays:
        kinds.setdefault(name.rstrip("0123456789"), []).append(name)
    views: Weights = {}
    flat: Weights = {}
    for kind, names in kinds.items():
        buffer = np.empty(sum(arrays[n].size for n in names), dtype=arrays[names[0]].dtype)
        offset = 0
        for n in names:
            view = buffer[offset : offset + arrays[n].size].reshape(arrays[n].shape)  # row-major, as before
            view[...] = arrays[n]
            views[n], offset = view, offset + arrays[n].size
        flat[kind] = buffer
    return {n: views[n] for n in arrays}, flat


def encode_labels(y: np.ndarray, arch: Architecture) -> np.ndarray:
    """Integer labels (m,) -> targets Y (n_out, m) in the architecture's dtype."""
    y = np.asarray(y)
    if arch.output == "sigmoid":
        return y.reshape(1, -1).astype(arch.dtype)
    Y = np.zeros((arch.layer_dims[-1], y.shape[0]), dtype=arch.dtype)
    Y[y, np.arange(y.shape[0])] = 1
    return Y


def forward(
    X: np.ndarray,
    weights: Weights,
    arch: Architecture,
    keep_prob: float = 1.0,
    rng: np.random.Generator | None = None,
    buffers: StepBuffers | None = None,
) -> tuple[np.ndarray, list[LayerCache]]:
    """Return the output logits Z[L] and the caches backprop needs.

    Inverted dropout: during training (keep_prob < 1) each hidden activation is multiplied by a
    0/1 mask and divided by keep_prob, so its expected value is unchanged and prediction needs
    no rescaling. ``buffers`` (for X's columns): Z and A are written there instead of fresh arrays.
    """
    activation = ACTIVATIONS[arch.hidden_activation]
    in_place = arch.hidden_activation in OVERWRITES_Z
    caches: list[LayerCache] = []
    A_prev = X
    for l in range(1, arch.n_layers):
        Z = columns_product(weights[f"W{l}"], A_prev, out=buffers and buffers.Z[l - 1])
        Z += weights[f"b{l}"]
        if in_place:  # relu: A over Z, against the buffers' zeros when there are some (activations.relu)
            A = activation(Z, out=Z, zeros=buffers.zeros[l - 1] if buffers else None)
        else:
            A = activation(Z, out=buffers and buffers.A[l - 1])
        mask = None
        if keep_prob < 1.0:
            assert rng is not None, "dropout needs a random generator"
            draws = rng.random(A.shape[::-1], dtype=A.dtype).T  # in A's (column) layout
            mask = (draws < keep_prob).astype(A.dtype) / A.dtype.type(keep_prob)
            caches.append(LayerCache(A_prev, Z, A, mask))
            A_prev = A * mask
        else:
            caches.append(LayerCache(A_prev, Z, A, None))
            A_prev = A
    L = arch.n_layers
    ZL = columns_product(weights[f"W{L}"], A_prev, out=buffers and buffers.Z[L - 1])
    ZL += weights[f"b{L}"]
    caches.append(LayerCache(A_prev, ZL, None, None))
    return ZL, caches


# --- L2 regularization: the penalty and its gradient, side by side; no other code writes the rule --
# The course's cost J = CE + lambda/(2m) * sum_l ||W[l]||^2 (biases are not regularized) has the
# gradient dCE/dW[l] + (lambda/m) W[l]. m is the number of examples the cross-entropy is averaged
# over: in fit, the batch of each step, the last partial batch included. That is scikit-learn's
# convention (alpha / batch size), and with it every step descends exactly the J of its own batch
# and full batch is the course's J with m = the training-set size. fit reports as train cost the
# mean, over the epoch's examples, of the J of the step that used them: mean CE + steps * lambda/(2m)
# * sum ||W||^2 (m = training-set size), the squares taken once at the epoch's end. fit's optimizers
# apply l2_gradient_scale in the step (plain gradient descent as the decay W *= 1 - lr * c: the
# same gradient, without a weight-sized temporary); backward applies it only when asked (gradcheck).


def l2_penalty(weights: Weights, l2_lambda: float, m: int) -> float:
    """(lambda / 2m) * sum of squared weights; biases are not regularized."""
    if l2_lambda == 0:
        return 0.0
    squares = sum(float(np.vdot(W, W)) for name, W in weights.items() if name.startswith("W"))
    return l2_lambda / (2 * m) * squares


def l2_gradient_scale(name: str, l2_lambda: float, m: int) -> float:
    """c such that d(l2_penalty)/d(parameter) = c * parameter: lambda / m for a weight matrix, 0 for a bias."""
    return l2_lambda / m if name.startswith("W") else 0.0


def compute_cost(ZL: np.ndarray, Y: np.ndarray, arch: Architecture, weights: Weights, l2_lambda: float = 0.0) -> float:
    """Cross-entropy of the logits plus the L2 term ``l2_penalty`` (its gradient: in ``backward``)."""
    _, loss = OUTPUTS[arch.output]
    return loss(ZL, Y) + l2_penalty(weights, l2_lambda, ZL.shape[1])


def backward(
    ZL: np.ndarray,
    Y: np.ndarray,
    caches: list[LayerCache],
    weights: Weights,
    arch: Architecture,
    l2_lambda: float = 0.0,
    out: Weights | None = None,
    buffers: StepBuffers | None = None,
    update: Mapping[int, Callable[[np.ndarray, np.ndarray], None]] | None = None,
) -> Weights:
    """Gradients of ``compute_cost`` with respect to every weight and bias ("dW1", "db1", ...).

    ``out``, if given, holds arrays shaped like the gradients; they are filled and returned, so
    a training loop can reuse one set instead of allocating weight-sized arrays every step.
    ``buffers`` (those ``forward`` was given): dZ and dA are written there instead of fresh arrays;
    for relu into the caches' activations, which are then gone (``StepBuffers``).
    (``fit`` passes ``l2_lambda=0`` and lets the optimizer fold the L2 gradient into its update.)
    ``update[l]``, for the layers it holds, takes the place of dW[l]: it is called as
    ``update[l](dZ[l], A[l-1])`` once W[l] has been read for the last time, and updates W[l] from
    the product dZ[l] A[l-1].T itself (plain gradient descent, ``optim.product_update``); their
    dW in ``out`` are left as they were. With relu ``buffers`` that needs ``allocate(spare=True)``.
    """
    probabilities, _ = OUTPUTS[arch.output]
    derivative = DERIVATIVES[arch.hidden_activation]
    m = ZL.shape[1]
    grads: Weights = {} if out is None else out
    dZ = probabilities(ZL, out=buffers and buffers.dZ)
    dZ -= Y
    dZ /= m  # sigmoid + binary CE and softmax + categorical CE both give dZ[L] = (A[L] - Y) / m
    ones = np.ones((m, 1), dZ.dtype) if buffers is None else buffers.ones
    shared = buffers is not None and bool(buffers.signs)  # relu's one array per layer (StepBuffers)
    for l in range(arch.n_layers, 0, -1):
        cache, W = caches[l - 1], weights[f"W{l}"]
        apply = update.get(l) if update else None
        if apply is None:
            dW = np.matmul(dZ, cache.A_prev.T, out=grads.get(f"dW{l}"))
            if scale := l2_gradient_scale(f"W{l}", l2_lambda, m):
                dW += scale * W
            grads[f"dW{l}"] = dW
        # row sums as a matrix-vector product: ~4x faster than dZ.sum(axis=1) on column-major dZ
        grads[f"db{l}"] = np.matmul(dZ, ones, out=grads.get(f"db{l}"))
        if l > 1:  # dA[0] (the gradient for X) is never needed, so it is never computed
            below = caches[l - 2]
            if shared:  # fit's step with relu: A[l-1] is read for its sign, then dA[l-1] takes its place
                positive = np.greater(below.A, 0, out=buffers.signs[l - 2])
                # (unless W[l] is updated below: that product still reads A[l-1])
                dA = columns_product(W.T, dZ, out=below.A if apply is None else buffers.spare[l - 2])
            else:
                dA = columns_product(W.T, dZ, out=buffers and buffers.dA[l - 2])
            if below.mask is not None:
                dA *= below.mask  # the same mask, already divided by keep_prob
            if apply is not None:  # W[l] has been read (dA above); A[l-1] is still whole
                apply(dZ, cache.A_prev)
            # relu_backward with the sign taken before, or the activation's own backward
            dZ = np.multiply(dA, positive, out=below.A) if shared else derivative(dA, below.Z, below.A)
        elif apply is not None:
            apply(dZ, cache.A_prev)
    return grads


# Prediction runs over chunks of columns, so that the activations of a million examples are never
# alive at once: each layer's chunk stays near this many bytes (pipeline.data.memory counts it).
PREDICT_BYTES = 2**24


def _column_chunks(X: np.ndarray, arch: Architecture) -> list[slice]:
    widest = max(arch.layer_dims[1:])
    step = max(1, PREDICT_BYTES // (np.dtype(arch.dtype).itemsize * widest))
    m = X.shape[1]
    return [slice(i, i + step) for i in range(0, m, step)] or [slice(0, 0)]


def predict_proba(X: np.ndarray, weights: Weights, arch: Architecture) -> np.ndarray:
    """Output probabilities (n_out, m): P(y=1) for a sigmoid output, class columns for softmax."""
    probabilities, _ = OUTPUTS[arch.output]
    chunks = _column_chunks(X, arch)
    if len(chunks) == 1:
        ZL, _ = forward(X.astype(arch.dtype, copy=False), weights, arch)
        return probabilities(ZL)
    out = np.empty((arch.layer_dims[-1], X.shape[1]), dtype=arch.dtype, order="F")
    for c in chunks:  # each chunk converted on its own: a float32 file is never copied whole
        ZL, _ = forward(X[:, c].astype(arch.dtype, copy=False), weights, arch)
        out[:, c] = probabilities(ZL)
    return out


def labels_from_logits(ZL: np.ndarray, arch: Architecture) -> np.ndarray:
    if arch.output == "sigmoid":
        return (ZL[0] > 0).astype(np.int64)  # s(z) > 0.5 exactly when z > 0
    return ZL.argmax(axis=0)


def predict(X: np.ndarray, weights: Weights, arch: Architecture) -> np.ndarray:
    """Predicted integer labels (m,); deterministic, no dropout."""
    chunks = _column_chunks(X, arch)
    if len(chunks) == 1:
        ZL, _ = forward(X.astype(arch.dtype, copy=False), weights, arch)
        return labels_from_logits(ZL, arch)
    out = np.empty(X.shape[1], dtype=np.int64)
    for c in chunks:
        ZL, _ = forward(X[:, c].astype(arch.dtype, copy=False), weights, arch)
        out[c] = labels_from_logits(ZL, arch)
    return out


def error_rate(X: np.ndarray, y: np.ndarray, weights: Weights, arch: Architecture) -> float:
    """Fraction of misclassified examples."""
    return float(np.mean(predict(X, weights, arch) != np.asarray(y)))
