"""Per-epoch curves as MLflow metric points (step = epoch), for trial runs and the final model's run.

Every epoch: ``train_cost``, ``dev_cost``, ``dev_error`` (the last two with dev data); the learning
rate only when it changes. When the epoch's log carries per-layer gradient health (a ``health``
tuple of records with ``layer``, 1-based, and the fields of ``HEALTH_FIELDS``), one point per layer
and field, named ``<field>/layer_<l>`` so that the MLflow UI groups each field's layers together.
A field that does not apply to a layer (``dead_fraction`` off ReLU, ``saturated_fraction`` off
sigmoid/tanh) is None and not logged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from mlflow.entities import Metric

HEALTH_FIELDS = ("w_norm", "grad_norm", "update_ratio", "dead_fraction", "saturated_fraction")


def epoch_values(log: Any) -> dict[str, float]:
    """The values of one epoch's log (a ``pipeline.nn.EpochLog``) that become curves, learning rate aside."""
    values = {"train_cost": log.train_cost, "dev_cost": log.dev_cost, "dev_error": log.dev_error}
    for layer in getattr(log, "health", None) or ():
        values |= {f"{name}/layer_{layer.layer}": getattr(layer, name) for name in HEALTH_FIELDS}
    # None: the field does not apply; inf: an update ratio with all-zero weights (MLflow stores no inf)
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


class Curves:
    """Metric points of the epochs seen so far, waiting to be written in one ``log_batch``."""

    def __init__(self) -> None:
        self.points: list[Metric] = []
        self._learning_rate: float | None = None

    def add(self, log: Any, timestamp: int) -> None:
        values = epoch_values(log)
        if log.learning_rate is not None and log.learning_rate != self._learning_rate:
            values["learning_rate"] = self._learning_rate = log.learning_rate
        self.points += [Metric(k, float(v), timestamp, log.epoch) for k, v in values.items()]

    def take(self) -> list[Metric]:
        """The waiting points; the buffer is empty afterwards."""
        points, self.points = self.points, []
        return points


def history_points(history: Iterable[Any], timestamp: int) -> list[Metric]:
    """The curves of a finished training (a sequence of epoch logs)."""
    curves = Curves()
    for log in history:
        curves.add(log, timestamp)
    return curves.take()
