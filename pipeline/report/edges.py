"""Best parameters at the edge of their search range: the optimum may lie outside it.

A best value within ``margin`` of an edge (a fraction of the range, on the log scale for the
parameters ``pipeline.study.space`` draws log-uniformly) gets a warning with the widened bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.config import SpaceParams
from pipeline.report.changes import proposed

LOG_SCALE = ("learning_rate", "l2_lambda")  # searched log-uniform by pipeline.study.space
EDGE_MARGIN = 0.05  # within 5% of the range's length (log scale where searched) counts as at the edge
EXTREMES = {
    ("keep_prob", "high"): "no dropout",
    ("n_layers", "low"): "the shallowest network",
    ("n_units", "low"): "the narrowest network",
    ("epochs", "low"): "the shortest training",
}


def _fmt(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _move(old: float, new: float) -> str:
    return f"{_fmt(old)} -> {_fmt(new)}"


@dataclass(frozen=True)
class EdgeWarning:
    name: str
    value: float
    low: float
    high: float
    side: str  # "low" | "high"
    message: str
    change: dict[str, float] = field(default_factory=dict)  # the widened bound, {} where it cannot go further


def edge_warnings(best: Mapping[str, float], space: SpaceParams, margin: float = EDGE_MARGIN) -> list[EdgeWarning]:
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
        wider = proposed(wider) if isinstance(wider, float) else wider
        where = f"{name} = {_fmt(value)} sits at the {side} edge of its range [{_fmt(rng.low)}, {_fmt(rng.high)}]"
        if wider is None:
            message = f"{where}; it cannot go further: the study prefers {EXTREMES.get((name, side), 'the extreme')}."
        else:
            message = f"{where}: the best value may lie outside it; widen {key}: {_move(edge, wider)}."
        out.append(
            EdgeWarning(name, value, rng.low, rng.high, side, message, {key: wider} if wider is not None else {})
        )
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
