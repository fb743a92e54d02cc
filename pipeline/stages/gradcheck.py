"""``pipeline gradcheck``: backprop against finite differences for the configured architecture.

Checks on small random data (the architecture, not the data set, is under test), with dropout
off and the configured L2 term in both the cost and the gradients, at ``check_weights`` (the
configured initialization with non-zero biases, away from ReLU's kink; ``gradient_check`` also
skips any parameter whose finite difference still crosses one). Exits 1 above the threshold.
"""

from __future__ import annotations

import argparse

import numpy as np

from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.nn import Architecture, check_weights, gradient_check


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", help="hidden layer sizes, e.g. 16,8 (default: model.hidden_layers)")
    parser.add_argument("--activation", help="hidden activation (default: model.hidden_activation)")
    parser.add_argument("--classes", type=int, default=3, help="output classes; 2 means one sigmoid unit (default 3)")
    parser.add_argument("--features", type=int, default=6, help="input features n_x (default 6)")
    parser.add_argument("--examples", type=int, default=8, help="examples m (default 8)")
    parser.add_argument("--l2", type=float, help="L2 lambda (default: train.l2_lambda)")
    parser.add_argument("--threshold", type=float, default=1e-7, help="largest accepted relative difference")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    try:
        hidden = tuple(int(n) for n in args.layers.split(",")) if args.layers else params.model.hidden_layers
    except ValueError:
        raise ConfigError(f"--layers must be comma-separated integers, got '{args.layers}'") from None
    try:
        arch = Architecture.build(
            args.features, args.classes, hidden, args.activation or params.model.hidden_activation, params.model.init
        )  # always float64: finite differences at epsilon = 1e-7 need double precision
    except ValueError as e:
        raise ConfigError(str(e)) from None
    l2 = params.train.l2_lambda if args.l2 is None else args.l2
    rng = np.random.default_rng(params.seed)
    X = rng.standard_normal((args.features, args.examples))
    y = rng.integers(0, arch.n_classes, args.examples)
    difference = gradient_check(X, y, check_weights(arch, rng), arch, l2_lambda=l2)
    ok = difference < args.threshold
    print(
        f"layers {arch.layer_dims} {arch.hidden_activation}/{arch.output} l2={l2:g}: "
        f"relative difference {difference:.3e} {'<' if ok else '>='} {args.threshold:g}: {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1
