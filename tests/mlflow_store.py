"""One migrated MLflow sqlite store per test session, copied for each test that needs a fresh store.

Creating a sqlite store runs MLflow's migrations (about 4 s); copying the migrated file takes
milliseconds. The template is made once per session whichever test folders ask for it: a
``conftest.py`` imports the ``mlflow_template`` fixture (``from tests.mlflow_store import
mlflow_template``) and copies it with ``fresh_store``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_template: Path | None = None  # one per session, even when several conftest files import the fixture


def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's migrated, empty sqlite store (made on first use)."""
    global _template
    if _template is None or not _template.is_file():
        from pipeline.tracking import MlflowClient  # through the package: telemetry off before mlflow loads

        db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()  # runs the migrations
        _template = db
    return _template


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_store(tmp_path_factory)


def fresh_store(template: Path, folder: Path) -> str:
    """A copy of the template at ``folder/mlflow.db``; returns its sqlite URI."""
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"
