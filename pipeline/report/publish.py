"""Publish the diagnosis to MLflow: tag every trial's run with its regime and attach the report to
the study's parent run, through ``pipeline.tracking`` (the one module that talks to MLflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.report.diagnosis import REGIME_TAG, regime
from pipeline.report.trials import TrialRow, complete

ARTIFACT_DIR = "report"


def trial_regimes(trials: Sequence[TrialRow], human_error: float, tolerance: float) -> dict[str, str]:
    """Run id -> regime for every finished trial that has an MLflow run and both error attributes."""
    return {
        r.run_id: regime(r.train_error, r.dev_error, human_error, tolerance)
        for r in complete(list(trials))
        if r.run_id and r.train_error is not None and r.dev_error is not None
    }


def tag_regimes(run_regimes: Mapping[str, str]) -> int:
    """Set the ``regime`` tag on each run; return how many were tagged (runs deleted since are skipped)."""
    return tracking.tag_runs({run_id: {REGIME_TAG: label} for run_id, label in run_regimes.items()})


def backfill_regimes(trials: Sequence[TrialRow], human_error: float, tolerance: float) -> int:
    """Tag all trials' runs of a study (rows of reports/study/trials.csv) with their regime."""
    return tag_regimes(trial_regimes(trials, human_error, tolerance))


def parent_run_id(run_ids: Iterable[str]) -> str | None:
    """The study's parent run, read from the ``mlflow.parentRunId`` tag of its trials' runs."""
    for run_id in run_ids:
        parent = tracking.parent_run_of(run_id)  # None for a run deleted since: another trial will do
        if parent:
            return parent
    return None


def publish(
    paths: Sequence[Path], summary: Mapping[str, Any], run_regimes: Mapping[str, str], run_ids: Iterable[str]
) -> str:
    """Tag the trials' runs and log the report files to the parent run; return what was done, in words."""
    if not run_regimes and not run_ids:
        return "no trial has an MLflow run id (trials.csv lacks user_attrs_mlflow_run_id): nothing logged to MLflow"
    tagged = tag_regimes(run_regimes)
    parent = parent_run_id([*run_regimes, *run_ids])
    if parent is None:
        return f"tagged {tagged} trial runs; no parent run found, so the report was not attached"
    metrics = {f"diagnosis_{key}": float(gap["value"]) for key, gap in (summary.get("gaps") or {}).items()}
    tracking.log_to_run(
        parent,
        metrics=metrics,
        tags={"diagnosis": str(summary.get("verdict"))},
        files=list(paths),
        artifact_dir=ARTIFACT_DIR,
    )
    return f"tagged {tagged} trial runs with '{REGIME_TAG}'; report logged to parent run {parent}"
