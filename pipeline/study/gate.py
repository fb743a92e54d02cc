"""The gradient-check gate: before a study's first trial, backprop must agree with the cost.

A bug in a backward function trains, just badly, and a study would spend hours ranking
hyperparameters of a broken network. So the launcher checks the configured network family once,
on a few real examples: the deepest network the space allows (``tune.space.n_layers.high``
hidden layers of ``min(tune.space.n_units.high, 16)`` units), the configured activation and
initialization, the data's classes, float64 and the smallest L2 term of the space. The weights
have random non-zero biases, so no pre-activation sits on a ReLU kink, where finite
differences and backprop legitimately disagree.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipeline import nn
from pipeline.config import Params
from pipeline.data.store import load_split
from pipeline.errors import NumericalError
from pipeline.study.objective import class_count
from pipeline.study.space import architecture

EXAMPLES = 8
MAX_WIDTH = 16
EPSILON = 1e-7
THRESHOLD = 1e-5  # float64 central differences at 1e-7 agree to ~1e-9; a wrong derivative gives >1e-3
N_CHECKS = 400  # coordinates checked (a seeded random subset): bounds the time on wide images


def gate_architecture(params: Params, n_x: int, n_classes: int) -> nn.Architecture:
    """The network the gate checks: the space's deepest, at most MAX_WIDTH wide, in float64."""
    space = params.tune.space
    hidden = (min(space.n_units.high, MAX_WIDTH),) * space.n_layers.high
    return architecture(dataclasses.replace(params.model, hidden_layers=hidden, dtype="float64"), n_x, n_classes)


def gradient_gate(params: Params, root: str | Path = ".") -> float:
    """Check backprop on the first EXAMPLES training rows; return the relative difference.

    Raises NumericalError (exit 5) above THRESHOLD, naming the difference and the network.
    """
    X, y = load_split("train", root)
    X = np.asarray(X[:EXAMPLES], dtype=np.float64).T  # (n_x, m), like every trial's input
    y = np.asarray(y[:EXAMPLES])
    arch = gate_architecture(params, X.shape[0], class_count(root))
    l2 = params.tune.space.l2_lambda.low
    weights = nn.check_weights(arch, np.random.default_rng(params.seed))
    difference = nn.gradient_check(
        X, y, weights, arch, l2_lambda=l2, epsilon=EPSILON, n_checks=N_CHECKS, seed=params.seed
    )
    if not difference <= THRESHOLD:  # also NaN
        raise NumericalError(
            f"gradient check failed before the study's first trial: relative difference {difference:.3e} > "
            f"{THRESHOLD:g} for layers {arch.layer_dims} {arch.hidden_activation}/{arch.output} l2={l2:g}; "
            "backprop in pipeline/nn disagrees with the cost: fix it (see `pipeline gradcheck`)"
        )
    return difference
