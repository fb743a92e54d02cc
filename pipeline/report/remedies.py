"""From a verdict to the next study: remedies on this project's knobs, and search-range edge alarms.

Course 2, week 1: high bias -> a bigger network, train longer (and less regularization); high
variance -> more data, more regularization. Each remedy names the ``params.yaml`` key to edit and
a concrete new value computed from the current range and the study's best parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import Params, SpaceParams
from pipeline.report.diagnosis import Diagnosis

LOG_SCALE = ("learning_rate", "l2_lambda")  # searched log-uniform by pipeline.study.space
EXTREMES = {
    ("keep_prob", "high"): "no dropout",
    ("n_layers", "low"): "the shallowest network",
    ("n_units", "low"): "the narrowest network",
    ("epochs", "low"): "the shortest training",
}


@dataclass(frozen=True)
class Remedy:
    problem: str  # what it addresses
    action: str
    knob: str  # the params.yaml key to change
    change: str  # e.g. "128 -> 256"


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _move(old: Any, new: Any) -> str:
    return f"{_fmt(old)} -> {_fmt(new)}"


def _range(low: float, high: float) -> str:
    return f"{{low: {_fmt(low)}, high: {_fmt(high)}}}"


def remedies(diag: Diagnosis, best: Mapping[str, Any], params: Params) -> list[Remedy]:
    """Map the verdict (and any other problem gap) onto knobs and search ranges for the next study."""
    space, train, split = params.tune.space, params.train, params.split
    units, layers, l2, kp = space.n_units, space.n_layers, space.l2_lambda, space.keep_prob
    b_units, b_l2 = best.get("n_units", units.high), best.get("l2_lambda", l2.low)
    b_kp, b_lr = best.get("keep_prob", kp.high), best.get("learning_rate", train.learning_rate)
    epochs_key, epochs = (
        ("tune.space.epochs.high", space.epochs.high) if space.epochs else ("train.epochs", train.epochs)
    )
    lr_range = _range(b_lr / 3, min(b_lr * 3, 1.0))
    bigger_dev = _move(split.dev, min(0.2, split.dev * 5))
    keys = set(diag.problems) | {diag.verdict}
    rows: list[tuple[str, str, str, str]] = []
    if keys & {"avoidable_bias", "high_bias", "both"}:
        p = "high bias"
        rows += [
            (p, "bigger network: more hidden units", "tune.space.n_units.high", _move(units.high, 2 * units.high)),
            (p, "bigger network: more layers", "tune.space.n_layers.high", _move(layers.high, layers.high + 1)),
            (p, "train longer: more epochs", epochs_key, _move(epochs, 2 * epochs)),
            (p, "a different learning rate: search around the best", "tune.space.learning_rate", lr_range),
            (
                p,
                "less L2 regularization",
                "tune.space.l2_lambda.high",
                _move(l2.high, _lower_cap(b_l2, l2.low, l2.high)),
            ),
            (p, "less dropout (higher keep_prob)", "tune.space.keep_prob.low", _move(kp.low, _raise_floor(b_kp, kp))),
        ]
        if b_units > units.low:
            rows.append(
                (p, "drop the smallest networks from the search", "tune.space.n_units.low", _move(units.low, b_units))
            )
    if keys & {"variance", "high_variance", "both"}:
        p = "high variance"
        smaller = b_units if b_units < units.high else max(units.low, units.high // 2)
        rows += [
            (
                p,
                "more training data of the same kind (see the learning curve)",
                "data.source / data.path",
                "more examples",
            ),
            (
                p,
                "more L2 regularization",
                "tune.space.l2_lambda.low",
                _move(l2.low, b_l2 if b_l2 > l2.low else l2.low * 10),
            ),
            (
                p,
                "more dropout (lower keep_prob)",
                "tune.space.keep_prob.low",
                _move(kp.low, round(max(0.3, kp.low - 0.2), 2)),
            ),
            (p, "a smaller network", "tune.space.n_units.high", _move(units.high, smaller)),
        ]
        if l2.allow_off:
            rows.append(
                (p, "always regularize: drop the 'off' choice", "tune.space.l2_lambda.allow_off", "true -> false")
            )
        if train.patience == 0:
            rows.append((p, "early stopping on dev cost", "train.patience", "0 -> 10"))
    if "data_mismatch" in keys:
        p = "data mismatch"
        rows += [
            (p, "make training data look like dev/test (source, resolution, preprocessing)", "data.source", "-"),
            (
                p,
                "a larger train-dev slice to measure the mismatch",
                "split.train_dev",
                _move(split.train_dev, max(0.05, 2 * split.train_dev)),
            ),
        ]
    if "dev_overfit" in keys:
        p = "overfitting to dev"
        rows += [
            (p, "a bigger dev set", "split.dev", bigger_dev),
            (p, "fewer trials per dev set, or re-rank the top trials on several seeds", "tune.n_trials", "-"),
        ]
    if diag.verdict == "inconclusive":
        rows.append(("inconclusive", "a bigger dev set before acting on the gap", "split.dev", bigger_dev))
        if split.train_dev == 0:
            rows.append(
                (
                    "inconclusive",
                    "a train-dev slice to measure variance on more examples",
                    "split.train_dev",
                    "0 -> 0.05",
                )
            )
    if diag.verdict == "good_fit":
        p = "good fit"
        rows += [
            (p, "refine: narrow the learning-rate range around the best", "tune.space.learning_rate", lr_range),
            (
                p,
                "refine: narrow the width range around the best",
                "tune.space.n_units",
                _range(max(1, b_units // 2), b_units * 2),
            ),
        ]
    return [Remedy(*r) for r in rows]


def _lower_cap(best_l2: float, low: float, high: float) -> float:
    """The new l2_lambda.high for less regularization: the best lambda, else a tenth of the old cap."""
    return max(best_l2, low) if 0 < best_l2 < high else high / 10


def _raise_floor(best_kp: float, kp: Any) -> float:
    """The new keep_prob.low for less dropout: the best keep_prob, else 0.2 higher."""
    return best_kp if best_kp > kp.low else round(min(kp.low + 0.2, kp.high), 2)


# --- best parameters at the edge of their range --------------------------------------------------


@dataclass(frozen=True)
class EdgeWarning:
    name: str
    value: float
    low: float
    high: float
    side: str  # "low" | "high"
    message: str


def edge_warnings(best: Mapping[str, Any], space: SpaceParams, margin: float = 0.05) -> list[EdgeWarning]:
    """Warn for each best value within ``margin`` of an edge (a fraction of the range, log scale where searched)."""
    out = []
    for name in ("learning_rate", "n_layers", "n_units", "l2_lambda", "keep_prob", "epochs"):
        rng, value = getattr(space, name), best.get(name)
        if rng is None or value is None or rng.low >= rng.high:
            continue
        if name == "l2_lambda" and value == 0:
            continue  # the "off" choice, not an edge of the range
        if isinstance(rng.low, int):
            side = "low" if value <= rng.low else "high" if value >= rng.high else None
        else:
            f = math.log if name in LOG_SCALE else float
            pos = (f(value) - f(rng.low)) / (f(rng.high) - f(rng.low))
            side = "low" if pos <= margin else "high" if pos >= 1 - margin else None
        if side is None:
            continue
        key, edge = f"tune.space.{name}.{side}", getattr(rng, side)
        wider = _wider(name, edge, side)
        where = f"{name} = {_fmt(value)} sits at the {side} edge of its range [{_fmt(rng.low)}, {_fmt(rng.high)}]"
        if wider is None:
            message = f"{where}; it cannot go further: the study prefers {EXTREMES.get((name, side), 'the extreme')}."
        else:
            message = f"{where}: the best value may lie outside it; widen {key}: {_move(edge, wider)}."
        out.append(EdgeWarning(name, value, rng.low, rng.high, side, message))
    return out


def _wider(name: str, edge: float, side: str) -> float | None:
    """The next value past an edge, or None where the parameter cannot go further."""
    up = side == "high"
    if name in LOG_SCALE:
        factor = 3 if name == "learning_rate" else 10
        return edge * factor if up else edge / factor
    if name == "keep_prob":
        new = round(min(1.0, edge + 0.1) if up else max(0.1, edge - 0.2), 2)
        return None if new == edge else new
    if name == "n_layers":
        return edge + 1 if up else (edge - 1 if edge > 1 else None)
    return edge * 2 if up else (max(1, edge // 2) if edge > 1 else None)  # n_units, epochs
