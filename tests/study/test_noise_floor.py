"""The noise-floor rule (tune.stop_at_noise_floor) and what pruning saved, on constructed trials and one real sweep."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from pipeline import cli
from pipeline.study.effort import study_effort
from pipeline.study.noise_floor import noise_floor_stop, standard_error
from tests.study.conftest import read_study, write_params

T0 = datetime(2026, 12, 1, 12, 0, 0)


def trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE, **attrs) -> FrozenTrial:
    """A finished trial, completed ``number`` minutes after T0 (the order the rule reads them in)."""
    epochs = attrs.pop("epochs", 10)
    seconds = attrs.pop("seconds", 10.0)
    t = optuna.trial.create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        user_attrs={"dev_error": value, **attrs} if value is not None else attrs,
        intermediate_values={e: 1.0 for e in range(1, epochs + 1)},
    )
    t.number = number
    t.datetime_complete = T0 + timedelta(minutes=number)
    t.datetime_start = t.datetime_complete - timedelta(seconds=seconds)
    return t


def test_standard_error_of_a_proportion():
    assert standard_error(0.05, 500) == pytest.approx(math.sqrt(0.05 * 0.95 / 500))
    assert standard_error(0.0, 100) == 0.0


def test_a_flat_noisy_objective_stops_after_patience_trials():
    n_dev, patience = 500, 5
    se = standard_error(0.2, n_dev)  # ~0.018
    rng = np.random.default_rng(0)
    values = 0.2 + rng.normal(0, se / 4, 30)  # noise well inside one standard error
    trials = []
    stopped_at = None
    for i, v in enumerate(values):
        trials.append(trial(i, float(v)))
        if noise_floor_stop(trials, n_dev, patience, 1.0):
            stopped_at = i
            break
    assert stopped_at is not None and stopped_at < 15  # it does not run the whole cap
    cause = noise_floor_stop(trials, n_dev, patience, 1.0)
    assert cause.startswith(f"noise floor: the last {patience} finished trials") and "standard error" in cause


def test_an_improving_objective_runs_on():
    n_dev, patience = 500, 3
    trials = [trial(i, 0.5 - 0.02 * i) for i in range(20)]  # 0.02 a trial, more than one SE (~0.02 at most)
    for k in range(1, len(trials) + 1):
        assert noise_floor_stop(trials[:k], n_dev, patience, 0.5) is None


def test_the_rule_needs_a_complete_trial_before_the_window_and_reads_trials_in_finishing_order():
    n_dev = 100
    pruned = [trial(i, None, TrialState.PRUNED) for i in range(4)]
    assert noise_floor_stop(pruned, n_dev, 3, 1.0) is None  # nothing completed before the window
    assert noise_floor_stop([trial(0, 0.3), trial(1, 0.3)], n_dev, 2, 1.0) is None  # too few trials
    # The big gain comes last in time although its number is lowest: the study still improves.
    late = trial(0, 0.1)
    late.datetime_complete = T0 + timedelta(hours=1)
    trials = [late, trial(1, 0.3), trial(2, 0.3), trial(3, 0.3)]
    assert noise_floor_stop(trials, n_dev, 2, 1.0) is None
    failed = [trial(0, 0.3), trial(1, None, TrialState.FAIL), trial(2, 0.3), trial(3, 0.3)]
    assert noise_floor_stop(failed, n_dev, 2, 1.0) is not None  # a FAIL trial is not a finished one


def test_at_zero_error_nothing_can_improve_so_patience_trials_stop_it():
    trials = [trial(0, 0.0), trial(1, 0.1), trial(2, 0.05)]
    assert noise_floor_stop(trials, 50, 2, 1.0) is not None
    assert noise_floor_stop(trials[:2], 50, 2, 1.0) is None


def test_effort_per_state_and_what_pruning_saved():
    trials = [
        trial(0, 0.2, epochs=10, seconds=20.0),
        trial(1, None, TrialState.PRUNED, epochs=3, seconds=6.0, epochs_trained=3, cause="pruned at epoch 3: ..."),
        trial(2, None, TrialState.PRUNED, epochs=2, seconds=4.0, epochs_trained=2, cause="diverged at epoch 2 ..."),
        trial(3, None, TrialState.FAIL, epochs=4, seconds=8.0),
        trial(4, None, TrialState.PRUNED, epochs=5, seconds=1.0, epochs_trained=5, values={"epochs": 25}),
    ]
    effort = study_effort(trials, default_epochs=10)
    assert effort["epochs_complete"] == 10 and effort["seconds_complete"] == 20.0
    assert effort["epochs_pruned"] == 10 and effort["seconds_pruned"] == 11.0
    assert effort["epochs_failed"] == 4 and effort["seconds_failed"] == 8.0
    # trial 1: 7 epochs missing at 2 s each; trial 4: 20 missing at 0.2 s; the diverged one saves nothing
    assert effort["epochs_saved_by_pruning"] == 7 + 20
    assert effort["seconds_saved_by_pruning"] == pytest.approx(7 * 2.0 + 20 * 0.2)


def test_a_real_sweep_stops_at_its_noise_floor_and_a_resume_runs_nothing(workspace, capsys):
    # factor 100: any gain smaller than 100 standard errors counts as noise, so it stops early.
    write_params(
        workspace.root / "params.yaml", n_trials=12, epochs=2, stop_at_noise_floor={"patience": 2, "factor": 100}
    )
    assert cli.main(["sweep", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    study = read_study(workspace.default_storage)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) < 12
    cause = study.user_attrs["stop_cause"]
    assert cause.startswith("noise floor") and f"stopped: {cause}" in out
    assert cli.main(["sweep", "--no-tracking", "--resume"]) == 0
    assert "stopped at its noise floor" in capsys.readouterr().out
    assert len(read_study(workspace.default_storage).trials) == len(study.trials)


@pytest.mark.slow  # MLflow
def test_the_parent_run_records_the_effort_what_pruning_saved_and_the_stop_cause(workspace, mlflow_store, capsys):
    from pipeline import tracking

    write_params(workspace.root / "params.yaml", n_trials=8, epochs=10, pruner="median")
    assert cli.main(["sweep"]) == 0
    study = read_study(workspace.default_storage)
    parent = tracking.MlflowClient(mlflow_store).get_run(study.user_attrs["mlflow_parent_run_id"])
    expected = study_effort(study.trials, default_epochs=10)
    assert {k: parent.data.metrics[k] for k in expected} == pytest.approx(expected)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and not t.user_attrs["cause"].startswith("div")]
    assert pruned and expected["epochs_saved_by_pruning"] == sum(10 - t.user_attrs["epochs_trained"] for t in pruned)
    assert parent.data.tags["sweep.stop_cause"] == study.user_attrs["stop_cause"] == "reached the cap of 8 trials"
