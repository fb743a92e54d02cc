"""Remedies in the training: for vanishing or exploding gradients, and for a configuration whose
errors swing from seed to seed.

Course 2, week 1: initialization scaled by the fan-in keeps activations and gradients from
shrinking or growing exponentially with depth, He (``sqrt(2 / fan_in)``) for ReLU units and Xavier
(``sqrt(1 / fan_in)``) for tanh and sigmoid; a smaller step and fewer layers help too. An unstable
configuration (a step so large that the outcome depends on the seed) gets a lower cap on the
learning rate and longer training. Each is a params.yaml change: ``model.init`` is not searched,
so it is changed through its own key; the learning rate and the depth through their search ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import Params
from pipeline.report.changes import Remedy, proposed
from pipeline.report.health import HealthFlag

RELU_LIKE = ("relu", "leaky_relu")
LR_STEP = 3  # a learning-rate cap a third of the configuration's rate
LR_SPAN = 10  # the range below a new cap spans at least a decade


def matching_init(activation: str) -> str:
    """The course's initialization for a hidden activation: He for ReLU units, Xavier for tanh and sigmoid."""
    return "he" if activation in RELU_LIKE else "xavier"


def lower_learning_rate(params: Params, rate: float, addresses: str, why: str) -> Remedy | None:
    """``tune.space.learning_rate.high`` a third of ``rate`` (and the low end moved down when it would cross)."""
    lr = params.tune.space.learning_rate
    high = proposed(min(rate, lr.high) / LR_STEP)
    changes: dict[str, Any] = {"tune.space.learning_rate.high": high}
    if high <= lr.low:
        changes["tune.space.learning_rate.low"] = proposed(high / LR_SPAN)
    return Remedy(changes, addresses, f"{why}: learning rates up to {high:.3g} (the configuration used {rate:.3g})")


def more_epochs(params: Params, addresses: str, why: str) -> Remedy:
    space = params.tune.space
    if space.epochs:
        return Remedy(
            {"tune.space.epochs.high": 2 * space.epochs.high}, addresses, f"{why}: up to {2 * space.epochs.high} epochs"
        )
    return Remedy({"train.epochs": 2 * params.train.epochs}, addresses, f"{why}: {2 * params.train.epochs} epochs")


def fewer_layers(params: Params, best: Mapping[str, Any], addresses: str) -> Remedy | None:
    layers = params.tune.space.n_layers
    used = int(best.get("n_layers", layers.high))
    high = max(1, min(used, layers.high) - 1)
    if high >= layers.high:
        return None
    changes: dict[str, Any] = {"tune.space.n_layers.high": high}
    if layers.low > high:
        changes["tune.space.n_layers.low"] = high
    return Remedy(
        changes, addresses, f"fewer layers: up to {high} (the final model has {used}); depth compounds the effect"
    )


def gradient_remedies(flag: HealthFlag, params: Params, best: Mapping[str, Any]) -> list[Remedy]:
    """The course's remedies for the flag, the initialization first when it does not suit the activation."""
    model, a = params.model, "gradients"
    out: list[Remedy | None] = []
    init = matching_init(model.hidden_activation)
    if model.init != init:
        name, scale = ("He", "sqrt(2 / fan_in)") if init == "he" else ("Xavier", "sqrt(1 / fan_in)")
        why = (
            f"{name} initialization for {model.hidden_activation} units: weights drawn with scale {scale} keep the "
            "gradient's size from layer to layer"
        )
        if model.init in ("random", "zeros"):
            why += (
                f" (`{model.init}` draws every layer at {'0' if model.init == 'zeros' else '0.01'}, whatever its width)"
            )
        out.append(Remedy({"model.init": init}, a, why))
    rate = float(best.get("learning_rate", params.train.learning_rate))
    step = lower_learning_rate(params, rate, a, "a smaller step")
    depth = fewer_layers(params, best, a)
    out += [step, depth] if flag.kind == "exploding" else [depth, step]
    return [r for r in out if r is not None]


def stability_remedies(params: Params, values: Mapping[str, Any]) -> list[Remedy]:
    """For a configuration whose errors swing across seeds: a lower cap on the learning rate, longer training."""
    rate = float(values.get("learning_rate", params.train.learning_rate))
    why = "the errors swing from seed to seed: a smaller step"
    out = [lower_learning_rate(params, rate, "stability", why), more_epochs(params, "stability", "train longer")]
    return [r for r in out if r is not None]
