"""Per-layer gradient health: the numbers that show vanishing and exploding gradients.

``fit`` calls ``layer_health`` once per epoch, at the epoch's last step, between ``backward`` and
the optimizer's update, on arrays it already holds: the weights that step starts from, the
gradients ``backward`` returned for them and (``unit_health``, taken just before ``backward``)
the pre-activations cached by that step's forward pass (the last batch); weights that plain
gradient descent updates inside backward are read from a copy taken before it (train.fit). No
extra pass over the data; the cost is a few norms per layer (with L2, a temporary of at most one
update block). Nothing here writes to those arrays.

Judging the numbers (flags, thresholds, remedies) is the report's job, not the core's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.nn.network import Architecture, LayerCache, Weights, l2_gradient_scale
from pipeline.nn.optim import BLOCK, blocks

# |Z| beyond which a unit counts as saturated on an example: there sigmoid' < 0.018 and
# tanh' < 0.071, both about 7 % of the derivative's peak (0.25 and 1), so almost no gradient passes.
SIGMOID_SATURATION = 4.0
TANH_SATURATION = 2.0
SATURATION = {"sigmoid": SIGMOID_SATURATION, "tanh": TANH_SATURATION}
CAN_DIE = ("relu", "leaky_relu")  # units that are never positive pass (almost) no gradient


@dataclass(frozen=True)
class LayerHealth:
    """One layer's health at an epoch's last step (layer counts from 1, as W[l]; the output is L).

    w_norm: ||W[l]|| (Frobenius) at the weights the step started from.
    grad_norm: ||dW[l]|| of that step: the gradient ``backward`` returns for those weights and the
        last batch with the run's L2 term (what ``gradient_check`` validates); dropout masks as drawn.
    update_ratio: learning_rate * grad_norm / w_norm, with the epoch's decayed learning rate
        (0 when grad_norm is 0, inf when only w_norm is 0). Gradient descent steps exactly this
        much relative to W; momentum steps lr * ||v||, and Adam about lr per coordinate whatever
        the gradient's size, so for them the ratio measures the gradient's scale (what vanishes or
        explodes), not the step actually taken.
    dead_fraction: relu / leaky_relu hidden layers: fraction of units whose Z is never > 0 on the
        last batch; None for other activations and for the output layer.
    saturated_fraction: sigmoid / tanh hidden layers: fraction of the last batch's (unit, example)
        entries with |Z| > SIGMOID_SATURATION (4) or TANH_SATURATION (2); None otherwise.
    """

    layer: int
    w_norm: float
    grad_norm: float
    update_ratio: float
    dead_fraction: float | None
    saturated_fraction: float | None


def _norm(x: np.ndarray) -> float:
    """``np.linalg.norm(x)`` of a real array (the same dot product and square root), without its dispatch."""
    flat = x.ravel(order="K")
    return float(np.sqrt(flat.dot(flat)))


def _norms(W: np.ndarray, dW: np.ndarray, scale: float) -> tuple[float, float]:
    """(||W||, ||dW + scale W||), reading W and dW once, a block at a time (optim.BLOCK elements).

    The gradient with its L2 term is formed one block at a time in a temporary that stays in the
    CPU's cache, instead of a weight-sized array made and read again (the optimizer still gets the
    data gradient it expects: nothing is written to W or dW). One block: the same numbers as one
    pass; more: the blocks' squares summed in float64.
    """
    if not scale:
        return _norm(W), _norm(dW)
    if W.size <= BLOCK or not (W.flags.c_contiguous and dW.flags.c_contiguous):
        with_l2 = np.multiply(W, scale)  # a new array
        return _norm(W), _norm(np.add(with_l2, dW, out=with_l2))  # = dW + scale * W, one temporary
    block = np.empty(BLOCK, dtype=np.result_type(W, dW))
    w_squares = g_squares = 0.0
    for W_, g in blocks(W, dW):  # the optimizer's pieces: views, so nothing is copied
        with_l2 = np.multiply(W_, scale, out=block[: W_.size])
        with_l2 += g
        w_squares += float(W_.dot(W_))
        g_squares += float(with_l2.dot(with_l2))
    return math.sqrt(w_squares), math.sqrt(g_squares)


def unit_health(caches: list[LayerCache], arch: Architecture) -> tuple[tuple[float | None, float | None], ...]:
    """(dead_fraction, saturated_fraction) of every layer, from one forward pass's caches.

    ``fit`` calls this between the forward and the backward pass of an epoch's last step: for
    relu, fit's backward pass writes the gradients over the activations (network.StepBuffers).
    """
    units = []
    for l in range(1, arch.n_layers + 1):
        dead = saturated = None
        if l < arch.n_layers:
            Z, A = caches[l - 1].Z, caches[l - 1].A
            if arch.hidden_activation == "relu":
                # A = relu(Z) >= 0, so a row of A sums to 0 exactly when its Z is never > 0 (a
                # finite cost got here, so no NaN); as a product with ones this is ~5x faster
                # than a reduction across the columns of the column-major Z (full batch: every step)
                dead = float(np.count_nonzero(np.matmul(A, np.ones((A.shape[1], 1), A.dtype)) == 0) / A.shape[0])
            elif arch.hidden_activation in CAN_DIE:
                dead = float(np.count_nonzero(~(Z > 0).any(axis=1)) / Z.shape[0])
            if arch.hidden_activation in SATURATION:
                saturated = float(np.count_nonzero(np.abs(Z) > SATURATION[arch.hidden_activation]) / Z.size)
        units.append((dead, saturated))
    return tuple(units)


def layer_health(
    weights: Weights,
    grads: Weights,
    caches: list[LayerCache],
    arch: Architecture,
    learning_rate: float,
    l2_lambda: float,
    m: int,
    units: tuple[tuple[float | None, float | None], ...] | None = None,
) -> tuple[LayerHealth, ...]:
    """Health of every layer from one step's weights, data gradients (L2 not yet added) and caches.

    ``m`` is the step's batch size, for the L2 gradient's scale (network.py's convention);
    ``units``: ``unit_health`` of the same step, taken before its backward pass (then ``caches``
    is not read).
    """
    if units is None:
        units = unit_health(caches, arch)
    health = []
    for l in range(1, arch.n_layers + 1):
        W, dW = weights[f"W{l}"], grads[f"dW{l}"]
        w_norm, grad_norm = _norms(W, dW, l2_gradient_scale(f"W{l}", l2_lambda, m))
        ratio = learning_rate * grad_norm / w_norm if w_norm else (math.inf if grad_norm else 0.0)
        health.append(LayerHealth(l, w_norm, grad_norm, ratio, *units[l - 1]))
    return tuple(health)
