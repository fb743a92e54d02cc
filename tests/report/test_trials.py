"""The trials as the report reads them: one parameter per key, importances only where the scores can
rank the trials, and what pruning saved."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import Params
from pipeline.report.context import build_context
from pipeline.report.selection import DevPredictions
from pipeline.report.trials import TrialRow, effort, importances, merged_params, trial_values
from tests.report.helpers import inputs


def trial(number: int, value: float, l2: str = "on", **params: object) -> TrialRow:
    values = {"learning_rate": 1e-3 * (number + 1), "n_units": 8 + number, "l2": l2, **params}
    if l2 == "on":
        values.setdefault("l2_lambda", 0.01 * (number + 1))
    return TrialRow(number, "COMPLETE", value, values, train_error=0.0, dev_error=value)


def test_the_l2_switch_is_folded_into_l2_lambda() -> None:
    off = trial(0, 0.1, l2="off")
    assert merged_params(off) == {"learning_rate": 1e-3, "n_units": 8, "l2_lambda": 0.0}
    assert trial_values(trial(1, 0.1, n_layers=2.0)) == {
        "learning_rate": 2e-3, "n_units": 9, "l2_lambda": 0.02, "n_layers": 2,
    }  # fmt: skip
    rows = [trial(i, 0.05 + 0.01 * i, l2="off" if i % 2 else "on") for i in range(8)]
    imps, why = importances(rows, seed=0)
    assert why == "" and "l2" not in imps and "l2_lambda" in imps  # one parameter, not two


def test_too_few_distinct_scores_show_no_importances() -> None:
    rows = [trial(i, [0.0, 0.0556, 0.0556, 0.1111][i % 4]) for i in range(12)]
    imps, why = importances(rows, seed=0)
    assert imps is None and "only 3 distinct dev errors" in why


def test_most_trials_tied_with_the_best_show_no_importances() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 40)
    pred = np.where(rng.random((8, 40)) < 0.9, y, (y + 1) % 10)  # eight trials of about the same accuracy
    found = inputs((30, 3000), (300, 3000))
    found.trials = [trial(i, float(np.mean(pred[i] != y)) + 1e-4 * i) for i in range(8)]
    found.predictions = DevPredictions(np.arange(8), pred, y)
    ctx = build_context(found, Params())
    assert ctx.importances is None
    assert f"{len(ctx.selection.tied_trials) + 1} of 8 finished trials are statistically indistinguishable" in (
        ctx.importance_reason
    )


def test_what_pruning_saved() -> None:
    rows = [
        TrialRow(0, "COMPLETE", 0.1, {}, seconds=6.0, attrs={"epochs_trained": 60}),
        TrialRow(1, "COMPLETE", 0.1, {"epochs": 30}, seconds=3.0, attrs={"epochs_trained": 30}),
        TrialRow(2, "PRUNED", None, {}, seconds=1.0, attrs={"epochs_trained": 10}),
        TrialRow(3, "PRUNED", None, {"epochs": 20}, seconds=0.5, attrs={"epochs_trained": 5}),
        TrialRow(4, "FAIL", None, {}, seconds=0.5, attrs={"epochs_trained": 5}),
    ]
    e = effort(rows, default_epochs=60)
    assert e.per_state["COMPLETE"] == {"trials": 2, "epochs": 90, "seconds": 9.0, "seconds_per_epoch": 0.1}
    assert e.per_state["PRUNED"]["epochs"] == 15 and e.per_state["FAIL"]["trials"] == 1
    assert e.seconds_per_epoch == pytest.approx(11.0 / 110)
    assert e.saved_epochs == (60 - 10) + (20 - 5)  # each pruned trial's missing epochs
    assert e.saved_seconds == pytest.approx(65 * 0.1)
    assert e.metrics()["pruning_saved_s"] == pytest.approx(6.5) and e.metrics()["trials_pruned_epochs"] == 15
    assert effort([TrialRow(0, "COMPLETE", 0.1, {})], 60) is None  # no epochs or durations recorded
