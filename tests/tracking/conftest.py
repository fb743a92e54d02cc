"""A private MLflow sqlite store per test, copied from the session's migrated template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lazy import lazy
from tests.mlflow_store import fresh_store

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it


@pytest.fixture
def store(mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tracking.MlflowClient:
    """A fresh store at tmp_path/mlflow.db, selected through MLFLOW_TRACKING_URI; returns a client on it."""
    uri = fresh_store(mlflow_template, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # anything relative stays inside the test's folder
    return tracking.MlflowClient(uri)
