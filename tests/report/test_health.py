"""Gradient health: flags from constructed rows and from a real deep network, their precedence over
high bias, and the course's remedies as params.yaml changes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pipeline import nn
from pipeline.config import params_from_dict
from pipeline.data.sources import digits_arrays
from pipeline.report.diagnosis import diagnose
from pipeline.report.health import FLOOR, health_flag, parse_rows
from pipeline.report.remedies import remedies
from pipeline.report.stats import estimate

HUMAN, TOL = 0.005, 0.02
SIZES = {"train": 1617, "dev": 90, "test": 90}


def rows(*epochs: list[float], w_norm: float = 1.0, **overrides: object) -> list:
    """Health rows: one list of update ratios (layer 1 first) per epoch."""
    out = []
    for e, ratios in enumerate(epochs, 1):
        for layer, r in enumerate(ratios, 1):
            out.append({"epoch": e, "layer": layer, "w_norm": w_norm, "grad_norm": r, "update_ratio": r} | overrides)
    return parse_rows(out)


def test_healthy_rows_raise_no_flag() -> None:
    assert health_flag(rows([3e-4, 4e-4, 6e-4], [2e-4, 3e-4, 5e-4]), underfit=False) is None
    # a converged network: every ratio tiny, none far below the others
    assert health_flag(rows([4e-7, 5e-7, 7e-7]), underfit=False) is None


def test_vanishing_when_the_first_layer_falls_orders_of_magnitude_behind() -> None:
    flag = health_flag(rows([1e-4, 1e-3, 2e-2]), underfit=True)  # 200x over 3 layers
    assert flag.kind == "vanishing" and flag.layer == 1 and "200x below" in flag.reason
    # deep networks: more than 10x per layer on average (6 layers: from 1e5)
    assert health_flag(rows([3e-5, 5e-5, 2e-4, 9e-4, 3e-3, 3e-2]), underfit=True) is None  # ~1000x: sigmoid's own
    assert health_flag(rows([3e-10, 1e-8, 8e-7, 6e-5, 4e-3, 5e-1]), underfit=True).kind == "vanishing"


def test_the_floor_applies_only_to_a_network_that_underfits() -> None:
    tiny = rows([FLOOR / 4, FLOOR / 2, FLOOR])
    assert health_flag(tiny, underfit=True).kind == "vanishing"
    assert health_flag(tiny, underfit=False) is None  # converged: every layer's gradient is small


def test_no_gradient_at_all_is_vanishing() -> None:
    dead = rows([0.0, 0.0, 0.0], dead_fraction=1.0)
    flag = health_flag(dead, underfit=True)
    assert flag.kind == "vanishing" and "nothing flows back" in flag.reason


def test_exploding_names_the_layer() -> None:
    # JSON has no inf: a null norm is non-finite
    raw = [{"epoch": 1, "layer": 1, "w_norm": 2.0, "grad_norm": 1.0, "update_ratio": 0.1},
           {"epoch": 1, "layer": 2, "w_norm": 3.0, "grad_norm": None, "update_ratio": None}]  # fmt: skip
    flag = health_flag(parse_rows(raw), underfit=False)
    assert flag.kind == "exploding" and flag.layer == 2 and flag.severe and "not finite" in flag.reason
    big = rows([1e-3, 1e-3], w_norm=3e8)
    assert health_flag(big, underfit=True).kind == "exploding" and health_flag(big, underfit=True).severe
    rising = rows([2e-2, 1e-3], [5e-1, 1e-3])  # layer 1's ratio 20x then 500x the output layer's
    flag = health_flag(rising, underfit=True)
    assert flag.kind == "exploding" and not flag.severe and "grows toward the input" in flag.reason


def test_a_flag_takes_precedence_over_high_bias_only() -> None:
    flag = health_flag(rows([1e-9, 1e-6, 1e-3]), underfit=True)
    underfit = {"train": estimate("train", 0.89, 1617), "dev": estimate("dev", 0.9, 90)}
    d = diagnose(underfit, HUMAN, TOL, gradient=flag)
    assert d.verdict == "vanishing_gradients" and d.bias_verdict == "high_bias"
    assert "takes precedence over the gaps' verdict (high bias (underfitting))" in d.summary()
    good = {"train": estimate("train", 0.0, 20_000), "dev": estimate("dev", 0.002, 20_000)}
    d = diagnose(good, HUMAN, TOL, gradient=flag)
    assert d.verdict == "good_fit" and "Gradient health: vanishing gradients" in d.summary()
    severe = health_flag(rows([1e-3, 1e-3], w_norm=1e9), underfit=False)
    assert diagnose(good, HUMAN, TOL, gradient=severe).verdict == "exploding_gradients"


@pytest.mark.parametrize(
    ("activation", "init", "first"),
    [("relu", "random", {"model.init": "he"}), ("sigmoid", "random", {"model.init": "xavier"}),
     ("tanh", "zeros", {"model.init": "xavier"}), ("leaky_relu", "xavier", {"model.init": "he"})],
)  # fmt: skip
def test_the_first_remedy_is_the_initialization_that_suits_the_activation(activation, init, first) -> None:
    params = params_from_dict({"model": {"hidden_activation": activation, "init": init}})
    flag = health_flag(rows([1e-9, 1e-6, 1e-3]), underfit=True)
    d = diagnose({"train": estimate("train", 0.89, 1617), "dev": estimate("dev", 0.9, 90)}, HUMAN, TOL, gradient=flag)
    fixes, _ = remedies(d, {"learning_rate": 0.01, "n_layers": 3}, params, SIZES)
    assert fixes[0].set == first and fixes[0].addresses == "gradients"
    keys = [k for r in fixes for k in r.set]
    assert "tune.space.n_layers.high" in keys and "tune.space.learning_rate.high" in keys
    assert "tune.space.n_units.high" not in keys  # a bigger network is the opposite of the fix


def test_exploding_with_a_suitable_init_lowers_the_step_first() -> None:
    params = params_from_dict({"model": {"hidden_activation": "relu", "init": "he"}})
    flag = health_flag(rows([1e-3, 1e-3], w_norm=1e9), underfit=True)
    d = diagnose({"train": estimate("train", 0.9, 1617), "dev": estimate("dev", 0.9, 90)}, HUMAN, TOL, gradient=flag)
    fixes, _ = remedies(d, {"learning_rate": 0.02, "n_layers": 3}, params, SIZES)
    assert fixes[0].set == {"tune.space.learning_rate.high": 0.00667}
    assert fixes[1].set == {"tune.space.n_layers.high": 2}


# --- a real deep network on the digits ------------------------------------------------------------


def deep_sigmoid_health(init: str) -> tuple[list, float]:
    """Health rows of 5 sigmoid hidden layers trained with plain gradient descent, and its train error."""
    X, y = digits_arrays()
    X = ((X - X.mean(0)) / (X.std(0) + 1e-8)).T
    arch = nn.Architecture.build(64, 10, (32,) * 5, "sigmoid", init)
    result = nn.fit(X, y, arch, nn.FitOptions(learning_rate=0.1, epochs=3, optimizer="gd", batch_size=64), seed=0)
    health = [{"epoch": h.epoch, **dataclasses.asdict(layer)} for h in result.history for layer in h.health]
    return parse_rows(health), nn.error_rate(X, y, result.weights, arch)


def test_a_deep_sigmoid_network_with_random_init_is_flagged_vanishing() -> None:
    rows_random, train_error = deep_sigmoid_health("random")
    assert train_error > 0.8  # at chance: 10 classes
    flag = health_flag(rows_random, underfit=True)
    assert flag is not None and flag.kind == "vanishing" and flag.layer == 1
    params = params_from_dict({"model": {"hidden_activation": "sigmoid", "init": "random"}})
    errors = {"train": estimate("train", train_error, 1797), "dev": estimate("dev", train_error, 90)}
    d = diagnose(errors, HUMAN, TOL, gradient=flag)
    assert d.verdict == "vanishing_gradients"
    fixes, _ = remedies(d, {"learning_rate": 0.1, "n_layers": 5}, params, SIZES)
    assert list(fixes[0].set) == ["model.init"] and fixes[0].set["model.init"] == "xavier"


def test_the_same_network_with_xavier_init_is_not_flagged() -> None:
    rows_xavier, _ = deep_sigmoid_health("xavier")
    assert health_flag(rows_xavier, underfit=True) is None
    ratios = {r.layer: r.update_ratio for r in rows_xavier if r.epoch == 3}
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert np.all(np.diff([ratios[k] for k in sorted(ratios)]) > 0)  # still shrinking toward the input, gently
