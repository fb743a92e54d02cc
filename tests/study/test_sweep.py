"""Sweeps as people run them: `python -m pipeline sweep` with worker processes, kills and Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest
from optuna.trial import TrialState

from pipeline.config import load_params
from pipeline.study.launch import COUNTED
from pipeline.study.objective import TrialData, train_trial
from pipeline.study.space import apply_params
from tests.study.conftest import (
    FAST_HEARTBEAT,
    mlflow_client,
    read_study,
    running_trial,
    storage_for,
    trial_runs,
    wait_for,
    write_params,
    write_split,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("mlflow_store")]


@pytest.mark.postgres
def test_three_workers_on_postgres_reach_exactly_the_cap(workspace, pg_url):
    result = workspace.run("sweep", "--storage", pg_url, "--workers", "3", "--n-trials", "9", *FAST_HEARTBEAT)
    assert result.returncode == 0, result.stdout
    study = read_study(pg_url)
    trials = study.get_trials()
    assert len(study.get_trials(states=COUNTED)) == 9
    assert sorted(t.number for t in trials) == list(range(9))  # no duplicates, and no surplus trial
    runs = trial_runs(workspace, study)
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert sorted(run_ids) == sorted(runs)  # exactly one MLflow run per trial
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.info.status == ("FINISHED" if t.state == TrialState.COMPLETE else "KILLED")
    assert result.stdout.count("] trial ") == 9  # one progress line per trial


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def test_a_killed_worker_trial_fails_and_its_parameters_are_retried(workspace, request, backend):
    # ~1 s float32 trials, caught in their first 40 of 200 epochs: time to kill one mid-training
    write_params(workspace.root / "params.yaml", n_trials=3, epochs=200, pruner="none")
    write_split(workspace.root / "data" / "split", m_train=1000)
    url, storage_args = storage_for(backend, workspace, request)
    proc = workspace.start("sweep", "--workers", "2", *storage_args, *FAST_HEARTBEAT)
    victim = wait_for(lambda: running_trial(url, max_epochs=40))
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "killed by signal 9" in out

    study = read_study(url)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert len(study.get_trials(states=COUNTED)) == 3
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    runs = trial_runs(workspace, study)
    assert runs[killed.user_attrs["mlflow_run_id"]].info.status == "FAILED"
    assert runs[retries[0].user_attrs["mlflow_run_id"]].info.status == "FINISHED"
    assert runs[retries[0].user_attrs["mlflow_run_id"]].data.tags["optuna.retry_of"] == str(victim.number)
    # The retry trained exactly like the original would have: its configuration, its random stream.
    assert retries[0].user_attrs["seed_trial"] == victim.number
    params = apply_params(load_params(workspace.root / "params.yaml"), killed.user_attrs["values"])
    original = train_trial(params, TrialData.read(workspace.root), victim.number, threads=1)
    assert retries[0].value == original["dev_error"]
    assert retries[0].user_attrs["dev_cost"] == original["dev_cost"]


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_marks_the_trial_exits_130_and_the_next_sweep_resumes(workspace, workers):
    # ~1 s trials, caught in their first 30 epochs: the signal (forwarded by the launcher to
    # each worker) lands while the trial still trains.
    write_params(workspace.root / "params.yaml", n_trials=3, epochs=150, pruner="none")
    write_split(workspace.root / "data" / "split", m_train=1000)
    url = workspace.default_storage
    proc = workspace.start("sweep", "--workers", str(workers), *FAST_HEARTBEAT)
    victim = wait_for(lambda: running_trial(url, max_epochs=30))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out

    study = read_study(url)
    interrupted = study.get_trials(states=(TrialState.FAIL,))
    states = [(t.number, t.state.name, t.user_attrs.get("cause"), len(t.intermediate_values)) for t in study.trials]
    assert victim.number in [t.number for t in interrupted], (out, victim.number, states)  # lands at its next epoch
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    runs = trial_runs(workspace, study)
    for t in interrupted:
        assert t.user_attrs["cause"] == "interrupted"
        if "mlflow_run_id" in t.user_attrs:  # absent when interrupted before its run was opened
            assert runs[t.user_attrs["mlflow_run_id"]].info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in runs.values())
    parent = mlflow_client(workspace).get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "KILLED"  # the interrupted sweep's parent run is not FINISHED

    result = workspace.run("sweep", "--resume", "--workers", str(workers), *FAST_HEARTBEAT)
    assert result.returncode == 0, result.stdout
    study = read_study(url)
    assert len(study.get_trials(states=COUNTED)) == 3
    assert len(study.trials) == 3 + len(interrupted)  # interrupted trials are replaced, not repeated
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_tune_stage_writes_best_params_and_a_rerun_only_adds_missing_trials(workspace):
    write_params(workspace.root / "params.yaml", n_trials=3)
    first = workspace.run("tune")
    assert first.returncode == 0, first.stdout
    best = json.loads((workspace.root / "reports" / "study" / "best_params.json").read_text())
    study = read_study(workspace.default_storage)
    assert best["trial_number"] == study.best_trial.number and best["value"] == study.best_value
    assert set(best["params"]) >= {"learning_rate", "n_layers", "n_units", "l2_lambda", "keep_prob"}

    write_params(workspace.root / "params.yaml", n_trials=4)  # as `dvc exp run -S tune.n_trials=4`
    second = workspace.run("tune")
    assert second.returncode == 0, second.stdout
    assert "3/4 trials done" in second.stdout
    study = read_study(workspace.default_storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    with open(workspace.root / "reports" / "study" / "trials.csv") as f:
        assert [row["number"] for row in csv.DictReader(f)] == ["0", "1", "2", "3"]
    parents = study.user_attrs["mlflow_parent_run_ids"]
    assert len(parents) == 2 and study.user_attrs["mlflow_parent_run_id"] == parents[-1]  # one parent run per sweep
