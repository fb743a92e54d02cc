"""The study's parent run: one per sweep (launch or resume), opened before workers start, closed at the end.

The parent run records the study's outcome as plain values (``StudySummary``): trial counts, the
best trial, parameter importances. The study plots are not drawn here: the report stage attaches
``report.html``, which holds the same history and importance figures, to this run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.tracking.store import (
    check_server,
    check_status,
    client,
    commit_tags,
    experiment_id,
    now_ms,
    running_runs,
    store_errors,
    text,
    tracking_uri,
)

SWEEP_PREFIX = "sweep-"  # the parent run's name is sweep-<study>
CLOSED_BY_TAG = "sweep.closed_by"


@dataclass(frozen=True)
class StudySummary:
    """What the parent run records about a study; ``pipeline.study.summary.summarize`` builds it."""

    trial_counts: Mapping[str, int]  # trials per state, lower case: complete, pruned, fail, running, waiting
    best_params: Mapping[str, Any] | None = None  # None: no trial completed
    best_value: float | None = None
    best_trial_number: int | None = None
    best_run_id: str = ""  # the best trial's MLflow run
    importances: Mapping[str, float] = field(default_factory=dict)  # empty: too few trials to rank


def prepare_study_run(study_name: str, experiment: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
    """Create the study's experiment if needed and a RUNNING parent run for this sweep; return its id.

    Call once in the launcher before workers start: creating a fresh sqlite store runs migrations,
    which race when several processes do it at once.
    """
    check_server(tracking_uri())  # a dead server: exit 4 in seconds, before anything is created
    with store_errors(OSError, ImportError):
        mlflow_client = client()
        exp_id = experiment_id(mlflow_client, experiment or study_name)
        all_tags = {"optuna.study": study_name, **commit_tags()} | {k: text(v) for k, v in (tags or {}).items()}
        run = mlflow_client.create_run(exp_id, run_name=f"{SWEEP_PREFIX}{study_name}", tags=all_tags)
    return run.info.run_id


def finish_study_run(
    parent_run_id: str,
    summary: StudySummary,
    status: str = "FINISHED",
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Log the study's outcome so far to its parent run (best params and value, importances) and end it.

    ``summary`` holds plain values (``pipeline.study.summary.summarize`` builds it from an Optuna
    study: this package knows nothing of the study's structure). The run ends with
    ``status``: FINISHED, KILLED for a sweep cut short by Ctrl-C or SIGTERM, FAILED for one that
    failed. ``metrics`` and ``tags`` are the caller's own (the sweep's effort, its stop cause).
    A store failure is a ``StorageError``; an unreachable server ``TrackingUnreachable``.
    """
    check_status(status)
    with store_errors():
        _finish(parent_run_id, summary, status, metrics or {}, tags or {})


def _finish(
    parent_run_id: str,
    summary: StudySummary,
    status: str,
    extra_metrics: Mapping[str, float],
    extra_tags: Mapping[str, Any],
) -> None:
    metrics: dict[str, float] = {f"n_trials_{state}": n for state, n in summary.trial_counts.items()}
    metrics["n_trials"] = sum(summary.trial_counts.values())
    params, tags = {}, {}
    if summary.best_params is None:
        tags["best.none"] = "no trial completed"
    else:
        params = {f"best_{k}": v for k, v in summary.best_params.items()}
        if summary.best_value is not None:
            metrics["best_value"] = summary.best_value
        if summary.best_trial_number is not None:
            metrics["best_trial_number"] = summary.best_trial_number
        if summary.best_run_id:  # "" when the best trial's run was written late, after its trial
            tags["best.mlflow_run_id"] = summary.best_run_id
    metrics |= {f"importance_{k}": v for k, v in summary.importances.items()}
    if not summary.importances:
        tags["importance.none"] = "too few completed trials to rank parameters"
    metrics |= dict(extra_metrics)
    tags |= {k: text(v) for k, v in extra_tags.items()}
    ts = now_ms()
    mlflow_client = client()
    # One log_batch: MlflowClient.log_batch splits what exceeds the store's per-call limits itself.
    mlflow_client.log_batch(
        parent_run_id,
        metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
        params=[Param(k, text(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    if summary.importances:
        mlflow_client.log_dict(parent_run_id, dict(summary.importances), "importances.json")
    mlflow_client.set_terminated(parent_run_id, status)


def close_dead_parent_runs(experiment: str, keep: str | None) -> int:
    """End the RUNNING parent runs of ``experiment`` other than ``keep`` as KILLED; return how many.

    For a new sweep to call when it starts: a launcher killed hard (SIGKILL, a lost machine) never
    ends its parent run. A parent run is a ``sweep-<study>`` run with no parent of its own. Only
    call it when no other launcher logs to this experiment at the same time: a live sweep's parent
    run looks the same. Each closed run gets the tag ``sweep.closed_by = <keep>``. An experiment
    that does not exist has none.
    """
    with store_errors():
        mlflow_client = client()
        exp = mlflow_client.get_experiment_by_name(experiment)
        if exp is None:
            return 0
        dead = [
            run
            for run in running_runs(mlflow_client, [exp.experiment_id])
            if run.info.run_id != keep
            and (run.info.run_name or "").startswith(SWEEP_PREFIX)
            and MLFLOW_PARENT_RUN_ID not in run.data.tags
        ]
        for run in dead:
            mlflow_client.set_tag(run.info.run_id, CLOSED_BY_TAG, keep or "")
            mlflow_client.set_terminated(run.info.run_id, "KILLED")
    return len(dead)
