"""The study engine in one process: search space, objective, cap and resume, outputs."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from pipeline.config import FloatRange, load_params
from pipeline.errors import ConfigError, NumericalError, StorageError
from pipeline.stages.tune import write_outputs
from pipeline.study import launch
from pipeline.study.config import PRUNERS, config_from_params
from pipeline.study.launch import COUNTED, clean_up, open_sweep
from pipeline.study.objective import Objective, TrialData, train_trial
from pipeline.study.space import apply_params, suggest
from pipeline.study.storage import mask_url, open_storage, repo_root, resolve_url, sqlite_path, sync_trial_end
from pipeline.study.worker import run_worker
from tests.study.conftest import write_params

FIXED = {"learning_rate": 0.01, "n_layers": 2, "n_units": 12, "keep_prob": 0.9}


@pytest.fixture
def local(workspace):
    """The workspace without MLflow, 3-epoch trials: a way to configure sweeps on its default sqlite file."""
    write_params(workspace.root / "params.yaml", epochs=3)
    params = load_params(workspace.root / "params.yaml")

    def configure(**tune):
        return config_from_params(params, tracking=False, heartbeat_interval=1, grace_period=3, **tune)

    return configure


def test_suggest_gives_every_key_and_l2_off_means_zero(workspace):
    params = load_params("params.yaml")
    off = suggest(FixedTrial({**FIXED, "l2": "off"}), params.tune.space, params)
    on = suggest(FixedTrial({**FIXED, "l2": "on", "l2_lambda": 0.05}), params.tune.space, params)
    assert off["l2_lambda"] == 0.0 and on["l2_lambda"] == 0.05
    assert set(off) == {
        "learning_rate",
        "n_layers",
        "n_units",
        "l2_lambda",
        "keep_prob",
        "optimizer",
        "batch_size",
        "epochs",
    }
    assert (off["optimizer"], off["batch_size"], off["epochs"]) == (params.train.optimizer, 32, 10)
    configured = apply_params(params, on)
    assert configured.model.hidden_layers == (12, 12)
    assert configured.train.l2_lambda == 0.05 and configured.train.learning_rate == 0.01


def test_suggest_stays_inside_the_space(workspace):
    params = load_params("params.yaml")
    space = params.tune.space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        values = suggest(study.ask(), space, params)
        assert space.learning_rate.low <= values["learning_rate"] <= space.learning_rate.high
        assert space.n_layers.low <= values["n_layers"] <= space.n_layers.high
        assert space.n_units.low <= values["n_units"] <= space.n_units.high
        assert values["l2_lambda"] == 0 or space.l2_lambda.low <= values["l2_lambda"] <= space.l2_lambda.high
        assert space.keep_prob.low <= values["keep_prob"] <= space.keep_prob.high


def test_objective_records_errors_and_epochs(workspace):
    params = load_params("params.yaml")
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(params, TrialData.read()), n_trials=2)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.value == t.user_attrs["dev_error"] and 0 <= t.value <= 1
        assert 0 <= t.user_attrs["train_error"] <= 1 and t.user_attrs["dev_cost"] > 0
        assert t.user_attrs["epochs_trained"] == 10
        assert sorted(t.intermediate_values) == list(range(1, 11))  # the pruner saw every epoch
        assert len(t.user_attrs["dev_pred"]) > 0 and "cv_error" not in t.user_attrs  # holdout: no folds


def test_a_diverging_trial_ends_with_its_cause_and_the_study_goes_on(workspace):
    params = load_params("params.yaml")
    # Learning rates near 1e250 with plain gradient descent overflow within a few epochs.
    space = dataclasses.replace(params.tune.space, learning_rate=FloatRange(1e200, 1e300))
    train = dataclasses.replace(params.train, optimizer="gd")
    params = dataclasses.replace(params, train=train, tune=dataclasses.replace(params.tune, space=space))
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(params, TrialData.read()), n_trials=4)
    assert len(study.trials) == 4 and all(t.state != TrialState.FAIL for t in study.trials)
    diverged = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert diverged
    for t in diverged:
        assert t.user_attrs["cause"].startswith("diverged at epoch")
        layer = t.user_attrs["diverged_layer"]  # the layer that exploded, also in the cause
        assert 1 <= layer <= t.user_attrs["values"]["n_layers"] + 1
        assert t.user_attrs["cause"].endswith(f", layer {layer} exploded): lower the learning rate")
        assert 1 <= t.user_attrs["epochs_trained"] <= 10
        assert "dev_pred" not in t.user_attrs  # predictions belong to finished trials


@pytest.mark.slow  # end to end
def test_the_pruner_named_in_params_prunes_on_dev_cost(workspace):
    params = load_params("params.yaml")
    kinds = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner}
    for name, kind in {**kinds, "none": optuna.pruners.NopPruner}.items():
        assert isinstance(PRUNERS[name](params), kind)
    for name in kinds:  # each prunes some trials of a small seeded study, and completes others
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), pruner=PRUNERS[name](params))
        study.optimize(Objective(params, TrialData.read()), n_trials=14)
        states = {t.state for t in study.trials}
        assert {TrialState.PRUNED, TrialState.COMPLETE} <= states, name
        pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
        assert all(t.user_attrs["cause"].startswith("pruned at epoch") for t in pruned)
        assert all(t.user_attrs["epochs_trained"] < 10 for t in pruned)


@pytest.mark.slow  # end to end
def test_cap_is_total_and_a_rerun_resumes(local):
    configure = local
    cfg = configure(n_trials=3)
    study, state = open_sweep(cfg)
    assert run_worker(cfg, state) == 3
    # A rerun with a higher cap runs only the missing trials, continuing the numbering.
    cfg = configure(n_trials=5)
    study, state = open_sweep(cfg, resume=True)
    assert state.counted_at_start == 3 and not state.complete
    assert run_worker(cfg, state) == 2
    # At the cap, a rerun runs nothing.
    study, state = open_sweep(cfg, resume=True)
    assert state.complete and run_worker(cfg, state) == 0
    assert [t.number for t in study.get_trials(states=COUNTED)] == [0, 1, 2, 3, 4]
    assert len(study.trials) == 5


def test_resume_flags_guard_against_mistakes(local):
    configure = local
    cfg = configure()
    with pytest.raises(StorageError, match="drop --resume"):  # no storage file yet
        open_sweep(cfg, resume=True)
    open_sweep(configure(study_name="other"))
    with pytest.raises(ConfigError, match="drop --resume"):  # a storage, but not this study
        open_sweep(cfg, resume=True)
    cfg = configure(n_trials=1)
    _, state = open_sweep(cfg, resume=False)
    run_worker(cfg, state)
    with pytest.raises(ConfigError, match="pass --resume"):
        open_sweep(cfg, resume=False)


@pytest.mark.slow  # end to end
def test_outputs_feed_the_train_stage(local, tmp_path):
    configure = local
    cfg = configure(n_trials=4, pruner="none")
    study, state = open_sweep(cfg)
    run_worker(cfg, state)
    path = write_outputs(study, tmp_path / "reports" / "study")
    best = json.loads(path.read_text())
    assert best["study_name"] == state.study_name == f"{cfg.params.tune.study_name}-{state.digest}"
    assert best["fingerprint"] == state.digest
    assert best["value"] == study.best_value and best["trial_number"] == study.best_trial.number
    assert best["seed_trial"] == best["trial_number"]  # not a retry: its own stream
    trained = apply_params(cfg.params, best["params"])  # the train stage's one way in
    assert trained.train.learning_rate == study.best_trial.params["learning_rate"]
    rows = list(csv.DictReader((path.parent / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert {"state", "value", "learning_rate", "train_error", "dev_error", "epochs_trained"} <= set(rows[0])


def test_no_completed_trial_is_a_numerical_error(tmp_path):
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    with pytest.raises(NumericalError, match="no completed trial"):
        write_outputs(study, tmp_path)
    assert not (tmp_path / "best_params.json").exists()


def test_a_killed_trial_without_heartbeat_is_failed_and_rerun(local):
    """A trial created but never started (worker killed in between) must not block the cap."""
    configure = local
    cfg = configure(n_trials=2, pruner="none")
    study, state = open_sweep(cfg)
    with pytest.warns(UserWarning, match="Heartbeat"):
        study.ask()  # RUNNING, no heartbeat, no "worker" attribute
    clean_up(study, cfg, mlflow=False)  # within the grace period: still counted as alive
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    later = datetime.now() + timedelta(seconds=cfg.grace_period + 1)
    clean_up(study, cfg, mlflow=False, now=lambda: later)  # as a worker sees it once the grace period passed
    assert run_worker(cfg, state) == 2
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_a_sweep_writes_its_sqlite_file_in_wal_mode_and_leaves_it_at_rest(local):
    cfg = local(n_trials=2, pruner="none")
    path = sqlite_path(cfg.storage)
    seen: list[str] = []
    study, state = open_sweep(cfg)
    launch.run_sweep(cfg, state, [lambda study, trial: seen.append(journal_mode(path))])
    launch.finish(study, cfg, state)
    assert seen == ["wal", "wal"]  # while the trials write: readers and writers do not queue on each other
    assert journal_mode(path) == "delete"  # at rest: one self-contained file
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]

    # Another process still has the file open at the sweep's end: it stays in WAL mode (as safe)
    # until a later sweep ends alone.
    cfg = local(n_trials=3, pruner="none")
    study, state = open_sweep(cfg, resume=True)
    other = sqlite3.connect(path)
    other.execute("SELECT count(*) FROM trials").fetchone()
    launch.run_sweep(cfg, state)
    launch.finish(study, cfg, state)
    assert journal_mode(path) == "wal"
    other.close()
    cfg = local(n_trials=4, pruner="none")
    study, state = open_sweep(cfg, resume=True)
    launch.run_sweep(cfg, state)
    launch.finish(study, cfg, state)
    assert journal_mode(path) == "delete"
    assert len(study.get_trials(states=COUNTED)) == 4


def synchronous(storage: optuna.storages.RDBStorage) -> int:
    """sqlite's synchronous setting on a connection of ``storage``'s engine: 1 NORMAL, 2 FULL."""
    with storage.engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def test_commits_in_wal_mode_skip_their_fsync_and_each_trial_end_syncs_the_log(local, monkeypatch):
    cfg = local(n_trials=3, pruner="none")
    path = sqlite_path(cfg.storage)
    study, state = open_sweep(cfg)  # the file is in WAL mode from here to the sweep's end
    assert synchronous(open_storage(cfg.storage)) == 1  # NORMAL: a commit is an append, no fsync
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), len(study.get_trials(states=COUNTED))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    launch.run_sweep(cfg, state)
    # One fsync of the log per trial, once that trial's end was committed: a power cut loses no
    # finished trial, only the latest epochs of a running one (which the heartbeat retries).
    assert synced == [(f"{path}-wal", 1), (f"{path}-wal", 2), (f"{path}-wal", 3)]
    launch.finish(study, cfg, state)
    assert synced[3:] == [(f"{path}-wal", 3)]  # the stop cause, synced before the file is put at rest
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert journal_mode(path) == "delete"
    assert synchronous(open_storage(cfg.storage)) == 2  # at rest, rollback journal: FULL, every commit synced
    synced.clear()
    sync_trial_end(cfg.storage)  # no log to sync: nothing happens
    sync_trial_end("postgresql+psycopg2://u@localhost:1/x")  # a server syncs its own commits
    assert synced == []


def test_a_failing_sync_at_a_trial_end_is_a_storage_error_but_never_hides_the_error_in_flight(local, monkeypatch):
    import pipeline.study.worker as worker

    def broken_disk(url: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(worker, "sync_trial_end", broken_disk)
    cfg = local(n_trials=1, pruner="none")
    _, state = open_sweep(cfg)
    with pytest.raises(StorageError, match="Input/output error"):  # one line (exit 4), not a traceback
        run_worker(cfg, state)

    def crash(self: Objective, trial: optuna.Trial) -> float:
        raise RuntimeError("the trial's own error")

    monkeypatch.setattr(Objective, "__call__", crash)
    cfg = local(n_trials=2, pruner="none")
    _, state = open_sweep(cfg, resume=True)
    with pytest.raises(RuntimeError, match="the trial's own error"):
        run_worker(cfg, state)


def test_storage_urls(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    assert resolve_url(None) == f"sqlite:///{tmp_path}/studies/optuna.db"
    assert mask_url("postgresql+psycopg2://bob:s3cret@db:5432/x") == "postgresql+psycopg2://bob:***@db:5432/x"
    with pytest.raises(ConfigError, match=r"tune\.storage"):
        resolve_url("redis://x")
    # A queued DVC experiment runs in a temporary copy: the study stays in the workspace.
    monkeypatch.delenv("PIPELINE_HOME")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"))
    assert repo_root() == Path(tmp_path)


def test_bad_sweep_options_are_config_errors(workspace):
    params = load_params("params.yaml")
    with pytest.raises(ConfigError, match="pruner"):
        config_from_params(params, pruner="sometimes")
    with pytest.raises(ConfigError, match="workers"):
        config_from_params(params, n_workers=0)
    with pytest.raises(ConfigError, match=r"tune\.timeout"):  # checked by TuneParams, as in params.yaml
        config_from_params(params, timeout=-1.0)
    with pytest.raises(ConfigError, match="threads"):
        config_from_params(params, threads=0)
    assert config_from_params(params, n_trials=7).params.tune.n_trials == 7


def test_a_changed_search_space_on_an_old_study_is_a_config_error(workspace):
    params = load_params("params.yaml")
    wide = dataclasses.replace(params.tune.space, optimizer=("adam", "momentum"))
    study = optuna.create_study()
    study.optimize(
        Objective(dataclasses.replace(params, tune=dataclasses.replace(params.tune, space=wide)), TrialData.read()),
        n_trials=1,
    )
    narrow = dataclasses.replace(params.tune.space, optimizer=("adam",))
    objective = Objective(
        dataclasses.replace(params, tune=dataclasses.replace(params.tune, space=narrow)), TrialData.read()
    )
    with pytest.raises(ConfigError, match=r"new tune\.study_name"):
        study.optimize(objective, n_trials=1)


def test_a_retried_trial_trains_with_the_original_trials_stream(workspace):
    """The heartbeat's retry copy (system attr failed_trial) seeds from the original trial's number."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    write_params(workspace.root / "params.yaml", epochs=3)
    params = load_params("params.yaml")

    def local(**tune):
        return config_from_params(params, tracking=False, **tune)

    cfg = local(n_trials=1, pruner="none")
    study, state = open_sweep(cfg)
    run_worker(cfg, state)
    original = study.trials[0]
    RetryHeartbeatStaleTrialCallback()(study, original)  # what the heartbeat does for a dead worker's trial
    cfg = local(n_trials=2, pruner="none")
    study, state = open_sweep(cfg, resume=True)
    assert run_worker(cfg, state) == 1
    retry = study.trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == original.params
    assert retry.user_attrs["seed_trial"] == 0 and original.user_attrs["seed_trial"] == 0
    assert retry.value == original.value and retry.user_attrs["dev_cost"] == original.user_attrs["dev_cost"]
    # The same configuration with its own number's stream trains another network.
    values = retry.user_attrs["values"]
    own = train_trial(apply_params(cfg.params, values), TrialData.read(), retry.number)
    again = train_trial(apply_params(cfg.params, values), TrialData.read(), 0)
    assert again["dev_cost"] == original.user_attrs["dev_cost"] and own["dev_cost"] != again["dev_cost"]
    best = json.loads(write_outputs(study, "reports/study").read_text())
    assert best["seed_trial"] == 0
