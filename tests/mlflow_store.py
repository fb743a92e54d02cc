"""One migrated, empty MLflow sqlite store, made once and copied for each test that needs a store.

Creating a sqlite store runs MLflow's ~50 schema migrations (about 3 s, on top of importing the
store code); copying the migrated file takes milliseconds. The template lives in pytest's cache
folder, keyed by the MLflow version, so it is made once per machine and MLflow version, not once
per test session and xdist worker; a file lock (flock) makes concurrent workers wait for the
first one. Delete ``.pytest_cache`` (or run ``pytest --cache-clear``) to rebuild it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest


def template_store(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The migrated, empty sqlite store for the installed MLflow (made on first use).

    In pytest's cache folder; with the cache plugin off (``-p no:cacheprovider``), in the
    session's temporary folder, which xdist workers share (``getbasetemp().parent``).
    """
    name = f"mlflow-template-{version('mlflow')}"
    cache = getattr(config, "cache", None)
    if cache is not None:
        folder = cache.mkdir(name)
    else:
        base = tmp_path_factory.getbasetemp()
        folder = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / name
        folder.mkdir(exist_ok=True)
    db = folder / "mlflow.db"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not db.is_file():
            from pipeline.tracking import MlflowClient  # through the package: telemetry off before mlflow loads

            building = folder / "building.db"
            building.unlink(missing_ok=True)
            MlflowClient(f"sqlite:///{building}").search_experiments()  # runs the migrations
            building.replace(db)  # whole or absent: an interrupted build is redone next time
    return db


def fresh_store(template: Path, folder: Path) -> str:
    """A copy of the template at ``folder/mlflow.db``; returns its sqlite URI."""
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"
