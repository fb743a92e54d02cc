"""The training loop: ``fit`` runs epochs of (mini-)batch updates and reports each epoch.

``fit`` knows nothing of search or tracking. Whatever watches training (a tracker, a pruner, a
progress line) is a callback that receives an ``EpochLog`` after every epoch; a callback that
raises stops training and its exception leaves ``fit`` unchanged.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.nn.health import LayerHealth, layer_health, unit_health
from pipeline.nn.network import (
    Architecture,
    LayerCache,
    StepBuffers,
    Weights,
    backward,
    compute_cost,
    encode_labels,
    forward,
    grouped,
    initialize,
    l2_gradient_scale,
    l2_penalty,
    labels_from_logits,
)
from pipeline.nn.optim import OPTIMIZERS, PRODUCT_UPDATE_MIN_SIZE, product_update, product_update_available


@dataclass(frozen=True)
class FitOptions:
    """How ``fit`` trains: the optimizer and its settings, regularization, schedule and stopping."""

    learning_rate: float = 0.001
    epochs: int = 60
    batch_size: int = 64  # 0: full batch
    optimizer: str = "adam"  # a key of pipeline.nn.optim.OPTIMIZERS
    beta1: float = 0.9  # momentum, and Adam's first moment
    beta2: float = 0.999  # Adam's second moment
    epsilon: float = 1e-8
    l2_lambda: float = 0.0
    keep_prob: float = 1.0
    lr_decay: float = 0.0  # learning_rate / (1 + lr_decay * (epoch - 1))
    patience: int = 0  # early stopping on dev cost after this many epochs without improvement; 0: off

    def __post_init__(self) -> None:
        checks = [
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 0, "batch_size must be >= 0 (0 means full batch)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)"),
            (self.epsilon > 0, "epsilon must be > 0"),
            (self.l2_lambda >= 0, "l2_lambda must be >= 0"),
            (0 < self.keep_prob <= 1, "keep_prob must lie in (0, 1]"),
            (self.lr_decay >= 0 and self.patience >= 0, "lr_decay and patience must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class EpochLog:
    epoch: int  # counts from 1
    train_cost: float  # mean mini-batch cross-entropy (dropout active) + the L2 term (convention: network.py)
    dev_cost: float | None  # plain cross-entropy of the dev predictions, no L2 term: what pruning compares
    dev_error: float | None
    learning_rate: float
    seconds: float  # wall time of this epoch's updates (the health numbers included)
    health: tuple[LayerHealth, ...] = ()  # per layer, at the epoch's last step (pipeline.nn.health)


Callback = Callable[[EpochLog], None]


@dataclass
class FitResult:
    weights: Weights
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0  # epoch of the lowest dev cost (the last epoch without dev data)
    stopped_early: bool = False
    seconds: float = 0.0


class Diverged(ArithmeticError):
    """The cost became NaN or infinite; ``layer`` (1-based, as W[l]) is the one that exploded, if known.

    ``fit`` names the layer by ``exploded_layer`` when it raises; None when no layer stands out.
    """

    def __init__(self, epoch: int, cost: float, layer: int | None = None) -> None:
        self.epoch, self.cost, self.layer = epoch, cost, layer
        where = f" (layer {layer} exploded)" if layer is not None else ""
        super().__init__(f"cost became {cost} at epoch {epoch}{where}: lower the learning rate")

    def __reduce__(self) -> tuple[type, tuple[int, float, int | None]]:  # picklable across processes
        return type(self), (self.epoch, self.cost, self.layer)


def exploded_layer(
    weights: Weights,
    caches: list[LayerCache],
    ZL: np.ndarray,
    Y: np.ndarray,
    arch: Architecture,
    learning_rate: float,
) -> int | None:
    """The layer that exploded on a pass whose cost is not finite (``caches`` and ``ZL`` of that pass).

    In the order things happen: the first layer whose weights are not finite (an earlier update
    overflowed them), else the first whose pre-activation Z overflowed on this pass, else the first
    whose gradient on this pass is not finite, else the one with the largest update ratio
    (learning_rate * ||dW|| / ||W||, as ``LayerHealth``) on this pass. "First" is the lowest layer:
    the forward pass meets it first, and everything above it follows. Runs only after divergence,
    so training itself is unchanged; None when every number is finite and no weight is non-zero.
    (For relu the cache holds relu(Z), where a Z of -inf reads as 0: that layer passes nothing on.)
    """
    layers = range(1, arch.n_layers + 1)
    for l in layers:
        if not (np.isfinite(weights[f"W{l}"]).all() and np.isfinite(weights[f"b{l}"]).all()):
            return l
    for l in layers:
        if not np.isfinite(caches[l - 1].Z).all():
            return l
    grads = backward(ZL, Y, caches, weights, arch)  # a fresh set: fit's buffers are left alone
    for l in layers:
        if not (np.isfinite(grads[f"dW{l}"]).all() and np.isfinite(grads[f"db{l}"]).all()):
            return l
    ratios = {}
    for l in layers:
        w_norm = float(np.linalg.norm(weights[f"W{l}"]))
        if w_norm:
            ratios[l] = learning_rate * float(np.linalg.norm(grads[f"dW{l}"])) / w_norm
    return max(ratios, key=ratios.__getitem__) if ratios else None


def _update_in_product(
    W: np.ndarray, dW: np.ndarray | None, learning_rate: float, scale: float, dZ: np.ndarray, A_prev: np.ndarray
) -> None:
    """``backward``'s update for a layer: W from its gradient's product; the gradient itself into ``dW``
    when given (the health step: the product ``backward`` would have made, for ``layer_health`` only)."""
    if dW is not None:
        np.matmul(dZ, A_prev.T, out=dW)
    product_update(W, dZ, A_prev, learning_rate, scale)


def fit(
    X: np.ndarray,
    y: np.ndarray,
    arch: Architecture,
    hp: FitOptions,
    *,
    X_dev: np.ndarray | None = None,
    y_dev: np.ndarray | None = None,
    seed: int | np.random.Generator = 0,
    callbacks: Sequence[Callback] = (),
    _health: bool = True,
) -> FitResult:
    """Train a network on X (n_x, m) with labels y (m,); return its weights and history.

    ``_health=False`` leaves ``EpochLog.health`` empty: only for tests and the benchmark, which
    check that the health numbers change nothing and cost little.
    """
    if X.shape[0] != arch.layer_dims[0]:
        raise ValueError(f"X has {X.shape[0]} features but the network expects {arch.layer_dims[0]}")
    # Independent streams for init, shuffling and dropout, so that e.g. changing keep_prob does
    # not change the initial weights or the batch order.
    init_rng, shuffle_rng, dropout_rng = np.random.default_rng(seed).spawn(3)
    # Examples contiguous (Fortran order), the layout the network computes in; no copy for the
    # pipeline's X.T of a row-major file already in the architecture's dtype.
    X = np.asfortranarray(X, dtype=arch.dtype)
    Y = encode_labels(y, arch)
    has_dev = X_dev is not None and y_dev is not None
    if has_dev:
        X_dev = np.asfortranarray(X_dev, dtype=arch.dtype)
        Y_dev = encode_labels(y_dev, arch)

    # The network reads weights and grads by layer; the optimizer updates all weights and all
    # biases as two flat arrays that those are views of (network.grouped)
    weights, parameters = grouped(initialize(arch, init_rng))
    optimizer = OPTIMIZERS[hp.optimizer](parameters, hp.beta1, hp.beta2, hp.epsilon)
    grads, gradients = grouped({"d" + name: np.empty_like(W) for name, W in weights.items()})  # reused by every step
    m = X.shape[1]
    batch = m if hp.batch_size == 0 else min(hp.batch_size, m)
    # Plain gradient descent updates its large weight matrices inside their gradient's product
    # (optim.product_update; the wide benchmark network's step at 2 threads: 1.17x -> 1.06x the
    # products-only floor, docs/benchmarks.md). Mini-batches only: a full batch's one step per
    # epoch is its health step, which would also need the gradient itself (below). The
    # optimizer's step updates the rest, through views of the layers it still owns.
    fused = getattr(optimizer, "updates_in_product", False) and batch < m and product_update_available(arch.dtype)
    in_product = [l for l in range(1, arch.n_layers + 1) if fused and weights[f"W{l}"].size >= PRODUCT_UPDATE_MIN_SIZE]
    step_parameters, step_gradients = parameters, gradients  # what the optimizer's step updates
    if in_product:
        rest = {f"W{l}": weights[f"W{l}"] for l in range(1, arch.n_layers + 1) if l not in in_product}
        step_parameters = {**rest, "b": parameters["b"]}
        step_gradients = {**{"d" + n: grads["d" + n] for n in rest}, "db": gradients["db"]}
    buffers = StepBuffers.allocate(arch, batch, spare=bool(in_product))  # the step's activations and their gradients
    if batch < m:  # each mini-batch of X is gathered into this, in the layout of X
        X_batch = np.empty((X.shape[0], batch), dtype=X.dtype, order="F")
    result = FitResult(weights=weights)
    best_cost, best_weights, waited = math.inf, None, 0
    start = time.perf_counter()

    # Divergence is detected from the cost and raised as Diverged; numpy's overflow warnings
    # on the way there would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, hp.epochs + 1):
            epoch_start = time.perf_counter()
            learning_rate = hp.learning_rate / (1 + hp.lr_decay * (epoch - 1))
            order = shuffle_rng.permutation(m) if batch < m else None  # reshuffled every epoch
            cost_sum, steps, health = 0.0, 0, ()
            for begin in range(0, m, batch):
                if order is None:
                    X_b, Y_b, step_buffers = X, Y, buffers
                else:
                    idx = order[begin : begin + batch]
                    X_b, step_buffers = X_batch[:, : len(idx)], buffers.columns(len(idx))
                    # X.T is row-major with an example per row, so this copies whole rows into the
                    # reused buffer; the default mode="raise" would copy through a temporary first
                    np.take(X.T, idx, axis=0, out=X_b.T, mode="clip")
                    # Y (n_out rows) is small; a fresh row-major copy keeps the cost's summation
                    # order, and so its rounding, as it was
                    Y_b = Y[:, idx]
                ZL, caches = forward(X_b, weights, arch, hp.keep_prob, dropout_rng, step_buffers)
                cost = compute_cost(ZL, Y_b, arch, weights)  # the L2 term: once per epoch, below
                if not math.isfinite(cost):
                    raise Diverged(epoch, cost, exploded_layer(weights, caches, ZL, Y_b, arch, learning_rate))
                health_step = _health and begin + batch >= m  # the epoch's health numbers: its last step
                if health_step:  # the units' numbers read the activations, which backward may overwrite
                    units = unit_health(caches, arch)
                started, update = {}, {}
                if in_product:
                    c = l2_gradient_scale("W", hp.l2_lambda, X_b.shape[1])  # every weight matrix's
                    # the health numbers read the weights the step starts from and its gradient: on
                    # that step (one an epoch) a copy of the first and a product for the second
                    if health_step:
                        started = {f"W{l}": weights[f"W{l}"].copy() for l in in_product}
                    for l in in_product:
                        dW = grads[f"dW{l}"] if health_step else None
                        update[l] = functools.partial(_update_in_product, weights[f"W{l}"], dW, learning_rate, c)
                grads = backward(ZL, Y_b, caches, weights, arch, out=grads, buffers=step_buffers, update=update)
                if health_step:  # before the step consumes grads (L2: in the step)
                    weights_then = {**weights, **started}
                    health = layer_health(
                        weights_then, grads, caches, arch, learning_rate, hp.l2_lambda, X_b.shape[1], units
                    )
                optimizer.step(step_parameters, step_gradients, learning_rate, hp.l2_lambda, X_b.shape[1])
                cost_sum += cost * X_b.shape[1]
                steps += 1
            seconds = time.perf_counter() - epoch_start

            dev_cost = dev_error = None
            if has_dev:
                ZL_dev, _ = forward(X_dev, weights, arch)
                dev_cost = compute_cost(ZL_dev, Y_dev, arch, weights)  # no L2 term: comparable across lambdas
                dev_error = float(np.mean(labels_from_logits(ZL_dev, arch) != y_dev))
                if not math.isfinite(dev_cost):
                    ZL_dev, dev_caches = forward(X_dev, weights, arch)  # again, keeping the caches: only now
                    layer = exploded_layer(weights, dev_caches, ZL_dev, Y_dev, arch, learning_rate)
                    raise Diverged(epoch, dev_cost, layer)
            # the mean over the examples of their step's cost (L2 convention: network.py, beside l2_penalty)
            train_cost = cost_sum / m + steps * l2_penalty(weights, hp.l2_lambda, m)
            log = EpochLog(epoch, train_cost, dev_cost, dev_error, learning_rate, seconds, health)
            result.history.append(log)
            for callback in callbacks:
                callback(log)

            if not has_dev:
                result.best_epoch = epoch
                continue
            if dev_cost < best_cost:
                best_cost, result.best_epoch, waited = dev_cost, epoch, 0
                if hp.patience:
                    best_weights = {k: v.copy() for k, v in weights.items()}
            elif hp.patience:
                waited += 1
                if waited >= hp.patience:
                    result.stopped_early = True
                    break

    if hp.patience and best_weights is not None:
        result.weights = best_weights  # early stopping restores the best weights seen on dev
    result.seconds = time.perf_counter() - start
    return result
