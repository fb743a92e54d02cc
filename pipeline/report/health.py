"""The final model's gradient health, judged: vanishing and exploding gradients (course 2, week 1).

The train stage writes ``reports/train_health.json``: per epoch and layer (``layer`` counts from 1,
the last is the output), ``w_norm`` = ||W[l]||, ``grad_norm`` = ||dW[l]|| of the epoch's last step
and ``update_ratio`` = learning rate x grad_norm / w_norm (``pipeline.nn.health``). Judged at the
last epoch, with r[l] the update ratio of layer l and L the number of layers:

- **exploding**: a norm that is not finite in any epoch (null in the file: JSON has no inf), a
  weight norm above ``EXPLODED_W_NORM``, or r[1] at least ``FACTOR`` times r[L] and higher than
  at the first epoch (growing toward the input, and over time);
- **vanishing**: no gradient reaches any layer (every grad_norm 0 at the end: dead or saturated
  units); r[1] below r[L] by a factor of at least max(``FACTOR``, 10^(L-1)), i.e. more than 10x
  lost per layer on average (a sigmoid layer alone passes at most a quarter of the gradient, so a
  deep sigmoid network with Xavier initialization, at about 4x per layer, is not flagged); or, while
  the network underfits, r[1] below ``FLOOR``: its first layer barely moves. The floor is not
  applied to a network that fits: at convergence every layer's gradient is tiny.

A flag names the layer (the first non-finite or exploded one, else layer 1) and the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FACTOR = 100.0  # two orders of magnitude between the first and the last layer
PER_LAYER = 10.0  # and more than one per layer on average, for deep networks
FLOOR = 1e-6  # an update this small moves a weight by a millionth of its size per step
EXPLODED_W_NORM = 1e6  # a weight matrix this large overflows activations within a few layers
NORMS = ("w_norm", "grad_norm", "update_ratio")


@dataclass(frozen=True)
class LayerRow:
    epoch: int
    layer: int
    w_norm: float
    grad_norm: float
    update_ratio: float
    dead_fraction: float | None = None
    saturated_fraction: float | None = None


@dataclass(frozen=True)
class HealthFlag:
    kind: str  # "vanishing" | "exploding"
    layer: int
    epoch: int
    reason: str
    severe: bool = False  # a non-finite or exploded norm: the network itself is broken

    @property
    def verdict(self) -> str:
        return f"{self.kind}_gradients"


def _number(x: Any) -> float:
    """A norm from the file; null (JSON's stand-in for inf and nan) reads as inf."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.inf


def parse_rows(raw: Sequence[Mapping[str, Any]]) -> list[LayerRow]:
    """The rows of train_health.json; ValueError naming the first field that is missing."""
    rows = []
    for r in raw:
        missing = [k for k in ("epoch", "layer", *NORMS) if k not in r]
        if missing:
            raise ValueError(f"a row lacks '{missing[0]}'")
        rows.append(
            LayerRow(
                int(r["epoch"]),
                int(r["layer"]),
                *(_number(r[k]) for k in NORMS),
                r.get("dead_fraction"),
                r.get("saturated_fraction"),
            )
        )
    return rows


def by_epoch(rows: Sequence[LayerRow]) -> dict[int, dict[int, LayerRow]]:
    """epoch -> layer -> row, in order."""
    out: dict[int, dict[int, LayerRow]] = {}
    for r in sorted(rows, key=lambda r: (r.epoch, r.layer)):
        out.setdefault(r.epoch, {})[r.layer] = r
    return out


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def _times(x: float) -> str:
    """A factor: '200x', '12,345x', '1.7e+09x'."""
    return f"{x:,.0f}x" if x < 1e6 else f"{x:.1e}x"


def health_flag(rows: Sequence[LayerRow], underfit: bool) -> HealthFlag | None:
    """The flag the rows raise (exploding first: it breaks the network), or None."""
    epochs = by_epoch(rows)
    if not epochs:
        return None
    for epoch, layers in epochs.items():
        for l, r in layers.items():
            bad = [k for k in NORMS if not math.isfinite(getattr(r, k))]
            if bad:
                return HealthFlag(
                    "exploding", l, epoch, f"layer {l}'s {bad[0]} is not finite at epoch {epoch}", severe=True
                )
            if r.w_norm > EXPLODED_W_NORM:
                why = (
                    f"layer {l}'s weight norm reached {_fmt(r.w_norm)} at epoch {epoch} (above {_fmt(EXPLODED_W_NORM)})"
                )
                return HealthFlag("exploding", l, epoch, why, severe=True)
    first_epoch, last_epoch = min(epochs), max(epochs)
    last = epochs[last_epoch]
    n_layers = max(last)
    r1, rL = last[1].update_ratio if 1 in last else math.nan, last[n_layers].update_ratio
    start = epochs[first_epoch]
    if n_layers > 1 and rL > 0 and r1 >= FACTOR * rL and 1 in start and start[n_layers].update_ratio > 0:
        before = start[1].update_ratio / start[n_layers].update_ratio
        if r1 / rL > before:
            why = (
                f"at epoch {last_epoch} layer 1's update ratio {_fmt(r1)} is {_times(r1 / rL)} the output layer's "
                f"{_fmt(rL)}, up from {_times(before)} at epoch {first_epoch}: the gradient grows toward the input"
            )
            return HealthFlag("exploding", 1, last_epoch, why)
    if all(r.grad_norm == 0 for r in last.values()):
        dead = [l for l, r in last.items() if r.dead_fraction == 1.0]
        why = f"every layer's gradient is 0 at epoch {last_epoch}: nothing flows back" + (
            f" (layers {', '.join(map(str, dead))} have no active unit)" if dead else ""
        )
        return HealthFlag("vanishing", 1, last_epoch, why)
    if n_layers < 2 or not math.isfinite(r1):
        return None
    needed = max(FACTOR, PER_LAYER ** (n_layers - 1))
    if rL > 0 and r1 * needed <= rL:
        why = (
            f"at epoch {last_epoch} layer 1's update ratio {_fmt(r1)} is {_times(rL / r1)} below the output layer's "
            f"{_fmt(rL)} (flagged from {_times(needed)} for {n_layers} layers)"
        )
        return HealthFlag("vanishing", 1, last_epoch, why)
    if underfit and r1 < FLOOR:
        why = f"layer 1's update ratio {_fmt(r1)} at epoch {last_epoch} is below {_fmt(FLOOR)}: the network underfits"
        return HealthFlag("vanishing", 1, last_epoch, why)
    return None


def last_epoch_table(rows: Sequence[LayerRow]) -> list[LayerRow]:
    """Each layer's row at the last epoch."""
    epochs = by_epoch(rows)
    return list(epochs[max(epochs)].values()) if epochs else []
