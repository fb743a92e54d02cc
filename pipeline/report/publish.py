"""Publish the diagnosis to MLflow: tag every trial's run with its regime and attach the report to
the study's parent run. The store is the one ``pipeline.tracking.tracking_uri()`` names.

``pipeline.tracking`` has no public helper to tag or log to an existing run, hence this small
module (a candidate to fold into ``pipeline.tracking``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.errors import StorageError
from pipeline.report.diagnosis import REGIME_TAG, regime
from pipeline.report.trials import TrialRow, complete
from pipeline.tracking import tracking_uri

ARTIFACT_DIR = "report"


def client() -> MlflowClient:
    return MlflowClient(tracking_uri())


def trial_regimes(trials: Sequence[TrialRow], human_error: float, tolerance: float) -> dict[str, str]:
    """Run id -> regime for every finished trial that has an MLflow run and both error attributes."""
    return {
        r.run_id: regime(r.train_error, r.dev_error, human_error, tolerance)
        for r in complete(list(trials))
        if r.run_id and r.train_error is not None and r.dev_error is not None
    }


def tag_regimes(mlflow_client: MlflowClient, run_regimes: Mapping[str, str]) -> int:
    """Set the ``regime`` tag on each run; return how many were tagged (runs deleted since are skipped)."""
    tagged = 0
    for run_id, label in run_regimes.items():
        try:
            mlflow_client.set_tag(run_id, REGIME_TAG, label)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            continue
        tagged += 1
    return tagged


def backfill_regimes(
    trials: Sequence[TrialRow], human_error: float, tolerance: float, mlflow_client: MlflowClient | None = None
) -> int:
    """Tag all trials' runs of a study (rows of reports/study/trials.csv) with their regime."""
    mlflow_client = mlflow_client or client()
    try:
        return tag_regimes(mlflow_client, trial_regimes(trials, human_error, tolerance))
    except MlflowException as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {e.message}; check MLFLOW_TRACKING_URI") from None


def parent_run_id(mlflow_client: MlflowClient, run_ids: Iterable[str]) -> str | None:
    """The study's parent run, read from the ``mlflow.parentRunId`` tag of its trials' runs."""
    for run_id in run_ids:
        try:
            parent = mlflow_client.get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
        except MlflowException:
            continue  # a run deleted since; another trial will do
        if parent:
            return parent
    return None


def publish(
    paths: Sequence[Path], summary: Mapping[str, Any], run_regimes: Mapping[str, str], run_ids: Iterable[str]
) -> str:
    """Tag the trials' runs and log the report files to the parent run; return what was done, in words."""
    if not run_regimes and not run_ids:
        return "no trial has an MLflow run id (trials.csv lacks user_attrs_mlflow_run_id): nothing logged to MLflow"
    c = client()
    try:
        tagged = tag_regimes(c, run_regimes)
        parent = parent_run_id(c, [*run_regimes, *run_ids])
        if parent is None:
            return f"tagged {tagged} trial runs; no parent run found, so the report was not attached"
        for path in paths:
            c.log_artifact(parent, str(path), ARTIFACT_DIR)
        c.set_tag(parent, "diagnosis", str(summary.get("verdict")))
        for key, gap in (summary.get("gaps") or {}).items():
            c.log_metric(parent, f"diagnosis_{key}", float(gap["value"]))
    except MlflowException as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {e.message}; check MLFLOW_TRACKING_URI") from None
    return f"tagged {tagged} trial runs with '{REGIME_TAG}'; report logged to parent run {parent}"
