"""Existing runs, whatever their status: read their status, parent and experiment, add metrics, tags and files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.tracking.store import client, is_missing, now_ms, store_errors, text


def log_to_run(
    run_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    files: tuple[str | Path, ...] | list[str | Path] = (),
    artifact_dir: str | None = None,
) -> None:
    """Add metrics, tags and files to an existing run (any status) without changing its status."""
    with store_errors():
        mlflow_client = client()
        ts = now_ms()
        mlflow_client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()],
            tags=[RunTag(k, text(v)) for k, v in (tags or {}).items()],
        )
        for path in files:
            mlflow_client.log_artifact(run_id, str(path), artifact_dir)


def tag_runs(run_tags: Mapping[str, Mapping[str, Any]]) -> int:
    """Set tags on existing runs (any status); runs deleted since are skipped. Return how many were tagged."""
    tagged = 0
    with store_errors():
        mlflow_client = client()
        for run_id, tags in run_tags.items():
            try:
                mlflow_client.log_batch(run_id, tags=[RunTag(k, text(v)) for k, v in tags.items()])
            except MlflowException as e:
                if not is_missing(e):
                    raise
                continue
            tagged += 1
    return tagged


def parent_run_of(run_id: str) -> str | None:
    """The parent run id of a run (its ``mlflow.parentRunId`` tag), None if it has none or is gone."""
    try:
        return client().get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
    except MlflowException:
        return None


def run_status(run_id: str) -> str | None:
    """RUNNING, SCHEDULED, FINISHED, FAILED or KILLED; None if the run does not exist or was deleted."""
    run = _live_run(run_id)
    return None if run is None else run.info.status


def live_run_experiment(run_id: str) -> str | None:
    """The experiment id of a run, None if the run does not exist or was deleted (no page to link to)."""
    run = _live_run(run_id)
    return None if run is None else run.info.experiment_id


def _live_run(run_id: str) -> Run | None:
    with store_errors():
        try:
            run = client().get_run(run_id)
        except MlflowException as e:
            if is_missing(e):
                return None
            raise
    return None if run.info.lifecycle_stage == "deleted" else run
