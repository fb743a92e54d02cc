"""A private MLflow sqlite store per test, copied from one migrated template (migrations take ~4 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import tracking


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    tracking.MlflowClient(f"sqlite:///{db}").search_experiments()  # runs the migrations once
    return db


@pytest.fixture
def store(template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tracking.MlflowClient:
    """A fresh store at tmp_path/mlflow.db, selected through MLFLOW_TRACKING_URI; returns a client on it."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # anything relative stays inside the test's folder
    return tracking.MlflowClient(uri)
