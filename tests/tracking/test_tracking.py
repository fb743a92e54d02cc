"""The MLflow run tree: store location, parent and child runs, statuses, batched curves, tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from pipeline.errors import StorageError
from pipeline.nn import EpochLog
from pipeline.paths import repo_root
from tests.lazy import lazy

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it
summary = lazy("pipeline.study.summary")  # it imports tracking


def epochs(n: int, seed: int = 0) -> list[EpochLog]:
    rng = np.random.default_rng(seed)
    return [EpochLog(e, *map(float, rng.random(3)), learning_rate=0.01, seconds=0.001) for e in range(1, n + 1)]


def children(client: tracking.MlflowClient, parent: str) -> dict[str, tracking.mlflow.entities.Run]:
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return {r.info.run_name: r for r in runs}


# --- where the store lives ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "PIPELINE_HOME", "DVC_ROOT"):
        monkeypatch.delenv(var, raising=False)


def test_default_store_is_absolute_sqlite_at_repo_root(clean_env, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub" / "deeper")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://db/mlflow")
    assert tracking.tracking_uri() == "postgresql://db/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///stores/other.db")  # relative: from the repo root
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/stores/other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////abs/other.db")
    assert tracking.tracking_uri() == "sqlite:////abs/other.db"


def test_queued_dvc_experiment_logs_to_the_workspace_store(clean_env, tmp_path: Path, monkeypatch) -> None:
    workspace = tmp_path / "ws"
    copy = workspace / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    (copy / ".dvc").mkdir(parents=True)
    (copy / ".git").mkdir()  # the temporary copy is a git clone of its own
    monkeypatch.chdir(copy)
    # without DVC_ROOT the path itself gives the workspace away
    assert repo_root() == workspace.resolve()
    # DVC sets DVC_ROOT to the workspace for queued experiments; PIPELINE_HOME wins over both
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))
    assert repo_root() == (tmp_path / "elsewhere").resolve()
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'home').resolve()}/mlflow.db"


def test_artifacts_sit_beside_the_sqlite_file(store, tmp_path: Path) -> None:
    parent = tracking.prepare_study_run("s", "my exp/1", {})
    location = store.get_experiment(store.get_run(parent).info.experiment_id).artifact_location
    assert Path(location.removeprefix("file://")) == tmp_path / "mlruns" / "my_exp_1"


# --- parent and child runs ---------------------------------------------------------------------


def test_run_tree_statuses_tags_and_batched_curves(store, monkeypatch) -> None:
    calls: list[int] = []
    real_log_batch = tracking.MlflowClient.log_batch

    def counting_log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append(len(metrics))
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    def no_single_metrics(*args, **kwargs):
        raise AssertionError("per-call log_metric used")

    monkeypatch.setattr(tracking.MlflowClient, "log_batch", counting_log_batch)
    monkeypatch.setattr(tracking.MlflowClient, "log_metric", no_single_metrics)

    parent = tracking.prepare_study_run("digits", None, {"data.hash": "abc123"})
    tags = {"data.hash": "abc123"}
    with tracking.TrialRun(parent, "digits", 0, {"learning_rate": 0.01, "n_units": 32}, tags, flush_every=10) as run:
        assert calls == []  # the params wait for the first flush
        for log in epochs(25):
            run.on_epoch(log)
        # epochs 1-10 and 11-20, three metrics each (+ the learning rate once: it never changes)
        assert calls == [31, 30]
        run.end("FINISHED", metrics={"final_train_error": 0.02, "final_dev_error": 0.05})
    assert calls[-1] == 15 + 3  # epochs 21-25, train_seconds and the final metrics in one call

    with pytest.raises(optuna.TrialPruned), tracking.TrialRun(parent, "digits", 1, {"learning_rate": 1.0}, tags) as run:
        run.on_epoch(epochs(1)[0])
        raise optuna.TrialPruned("pruned at epoch 1")
    with pytest.raises(FloatingPointError), tracking.TrialRun(parent, "digits", 2, {}, tags):
        raise FloatingPointError("cost became nan at epoch 3")
    with pytest.raises(KeyboardInterrupt), tracking.TrialRun(parent, "digits", 3, {}, tags):
        raise KeyboardInterrupt
    with tracking.TrialRun(parent, "digits", 4, {}, tags) as run:
        run.end("FAILED", tags={tracking.FAIL_CAUSE_TAG: "Diverged: cost became inf"})

    exp = store.get_experiment(store.get_run(parent).info.experiment_id)
    assert exp.name == "digits"
    kids = children(store, parent)
    assert sorted(kids) == [f"trial-{n}" for n in range(5)]
    status = {name: r.info.status for name, r in kids.items()}
    assert status == {
        "trial-0": "FINISHED",
        "trial-1": "KILLED",
        "trial-2": "FAILED",
        "trial-3": "KILLED",
        "trial-4": "FAILED",
    }
    assert store.get_run(parent).info.status == "RUNNING"  # until finish_study_run

    first = kids["trial-0"].data
    assert first.params == {"learning_rate": "0.01", "n_units": "32"}
    assert first.tags["optuna.study"] == "digits" and first.tags["optuna.trial_number"] == "0"
    assert first.tags["data.hash"] == "abc123" and first.tags["git.commit"]
    assert first.metrics["final_dev_error"] == 0.05
    for key in ("train_cost", "dev_cost", "dev_error"):
        history = store.get_metric_history(kids["trial-0"].info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, 26))  # one point per epoch
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == [getattr(e, key) for e in epochs(25)]
    assert first.metrics["train_seconds"] == pytest.approx(25 * 0.001)
    assert "optuna.fail_cause" not in first.tags
    assert kids["trial-2"].data.tags["optuna.fail_cause"] == "FloatingPointError: cost became nan at epoch 3"
    assert kids["trial-4"].data.tags["optuna.fail_cause"] == "Diverged: cost became inf"
    assert len(store.get_metric_history(kids["trial-1"].info.run_id, "dev_cost")) == 1  # flushed on the way out


def test_end_rejects_unknown_status(store) -> None:
    parent = tracking.prepare_study_run("s", None, {})
    with tracking.TrialRun(parent, "s", 0, {}) as run:
        with pytest.raises(ValueError, match="FINISHED"):
            run.end("DONE")
        run.end("FINISHED")
    assert store.get_run(run.run_id).info.status == "FINISHED"


def test_one_experiment_per_study_and_a_parent_per_sweep(store) -> None:
    first = tracking.prepare_study_run("digits", "shared", {})
    second = tracking.prepare_study_run("digits", "shared", {})
    a, b = store.get_run(first), store.get_run(second)
    assert first != second and a.info.experiment_id == b.info.experiment_id
    assert a.info.status == b.info.status == "RUNNING"


def test_unreachable_store_is_a_storage_error(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    with pytest.raises(StorageError, match="MLFLOW_TRACKING_URI"):
        tracking.prepare_study_run("s", None, {})


# --- study summary and orphans -----------------------------------------------------------------


def run_study(parent: str, n_trials: int, fail_after: int | None = None) -> optuna.Study:
    study = optuna.create_study(study_name="digits", sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("mlflow_parent_run_id", parent)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("n_units", 8, 64)
        with tracking.TrialRun(parent, study.study_name, trial.number, trial.params) as run:
            trial.set_user_attr("mlflow_run_id", run.run_id)
            for e in range(1, 4):
                value = abs(np.log10(lr) + 2) + units / 1000 + 1 / e
                trial.report(value, e)
            if fail_after is not None and trial.number >= fail_after:
                raise RuntimeError("boom")
            run.end("FINISHED", metrics={"final_dev_error": value})
        return value

    study.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    return study


def test_finish_study_run_logs_best_and_importances(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    study = run_study(parent, 6, fail_after=5)
    tracking.finish_study_run(parent, summary.summarize(study))
    run = store.get_run(parent)
    assert run.info.status == "FINISHED"
    best = study.best_trial
    assert run.data.params == {f"best_{k}": str(v) for k, v in best.params.items()}
    assert run.data.metrics["best_value"] == best.value
    assert run.data.metrics["n_trials_complete"] == 5 and run.data.metrics["n_trials_fail"] == 1
    assert run.data.tags["best.mlflow_run_id"] == best.user_attrs["mlflow_run_id"]
    importances = {k.removeprefix("importance_"): v for k, v in run.data.metrics.items() if k.startswith("importance_")}
    assert set(importances) == {"learning_rate", "n_units"} and sum(importances.values()) == pytest.approx(1.0)
    # no plots: the report stage attaches report.html, which draws the same figures
    assert [a.path for a in store.list_artifacts(parent)] == ["importances.json"]


def test_finish_study_run_when_the_best_run_was_written_late(store) -> None:
    """A best trial whose run waited in the outbox has no run id (older studies stored None): no tag, no crash."""
    parent = tracking.prepare_study_run("digits", None, {})
    study = optuna.create_study(study_name="digits")
    for value, run_id in ((0.2, "abc"), (0.1, None)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"n_units": 8},
                distributions={"n_units": optuna.distributions.IntDistribution(8, 64)},
                value=value,
                user_attrs={"mlflow_run_id": run_id},
            )
        )
    tracking.finish_study_run(parent, summary.summarize(study))
    run = store.get_run(parent)
    assert run.info.status == "FINISHED" and "best.mlflow_run_id" not in run.data.tags
    assert run.data.metrics["best_value"] == study.best_value


def test_finish_study_run_with_too_few_trials(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    study = run_study(parent, 1)
    tracking.finish_study_run(parent, summary.summarize(study))
    run = store.get_run(parent)
    assert run.info.status == "FINISHED"
    assert "importance.none" in run.data.tags and "best_value" in run.data.metrics
    assert not any(k.startswith("importance_") for k in run.data.metrics)
    assert store.list_artifacts(parent) == []


@pytest.mark.parametrize("with_parent", [True, False])
def test_mark_orphans_ends_runs_left_running(store, with_parent: bool) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    study = optuna.create_study(study_name="digits")
    if with_parent:
        study.set_user_attr("mlflow_parent_run_id", parent)
    states = [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    runs = []
    for state in states:
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        run = tracking.TrialRun(parent, "digits", trial.number, {"lr": lr})  # never ended: its worker "died"
        trial.set_user_attr("mlflow_run_id", run.run_id)
        study.tell(trial, 1.0 if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        runs.append(run.run_id)
    unlinked = study.ask()  # killed before it could record its run id
    runs.append(tracking.TrialRun(parent, "digits", unlinked.number, {}).run_id)
    study.tell(unlinked, state=optuna.trial.TrialState.FAIL)
    running = study.ask()  # still running: must be left alone
    live = tracking.TrialRun(parent, "digits", running.number, {})
    running.set_user_attr("mlflow_run_id", live.run_id)
    other_study = tracking.TrialRun(parent, "other", 0, {})  # same numbers, another study

    expected = ["FAILED", "KILLED", "FINISHED", "FAILED" if with_parent else "RUNNING"]
    assert tracking.mark_orphans(study) == (4 if with_parent else 3)
    assert [store.get_run(r).info.status for r in runs] == expected
    assert store.get_run(live.run_id).info.status == "RUNNING"
    assert store.get_run(other_study.run_id).info.status == "RUNNING"
    assert store.get_run(parent).info.status == "RUNNING"
    assert "worker died" in store.get_run(runs[0]).data.tags["optuna.fail_cause"]
    assert store.get_run(runs[0]).data.params == {"lr": str(study.trials[0].params["lr"])}  # never flushed: from Optuna
    assert tracking.mark_orphans(study) == 0


def test_log_to_run_adds_to_a_finished_run(store, tmp_path: Path) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {}) as run:
        pass
    report = tmp_path / "diagnosis.md"
    report.write_text("# high variance")
    tracking.log_to_run(
        run.run_id, metrics={"gap": 0.1}, tags={"regime": "variance"}, files=[report], artifact_dir="report"
    )
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.metrics["gap"] == 0.1
    assert logged.data.tags["regime"] == "variance"
    assert [a.path for a in store.list_artifacts(run.run_id, "report")] == ["report/diagnosis.md"]
    assert tracking.parent_run_of(run.run_id) == parent
    assert tracking.parent_run_of(parent) is None and tracking.parent_run_of("0" * 32) is None


def test_learning_rate_is_logged_when_it_changes(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    rates = [0.1, 0.1, 0.05, 0.05, 0.025]
    with tracking.TrialRun(parent, "digits", 0, {}) as run:
        for epoch, rate in enumerate(rates, start=1):
            run.on_epoch(EpochLog(epoch, 1.0, None, None, rate, 0.5))  # no dev data: no dev metrics
    history = sorted(store.get_metric_history(run.run_id, "learning_rate"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (3, 0.05), (5, 0.025)]
    metrics = store.get_run(run.run_id).data.metrics
    assert "dev_cost" not in metrics and metrics["train_seconds"] == 2.5
    assert len(store.get_metric_history(run.run_id, "train_cost")) == 5
