"""Where the MLflow store lives, a client on it, and the plumbing every tracking module shares.

Where the store lives (``tracking_uri``): ``MLFLOW_TRACKING_URI`` if set, else
``sqlite:///<repo root>/mlflow.db`` with an absolute path; a relative sqlite path is taken from the
repo root too (``pipeline.paths.repo_root`` says which folder that is). Artifacts of a local
sqlite store go to ``mlruns/`` beside the database file, never to the working directory: a DVC
experiment's temporary copy is deleted after the experiment.

Everything goes through ``MlflowClient`` with explicit run ids rather than the fluent active-run
stack, so worker processes and threads can attach child runs to a parent they did not start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StorageError
from pipeline.paths import repo_root

MAX_VALUE_CHARS = 5000  # params allow 6000, tags 8000; one cap for both keeps it simple
STATUSES = ("FINISHED", "KILLED", "FAILED")  # how a run may end
# What a store that cannot be used raises; creating one may also raise OSError (a folder that is
# not writable) or ImportError (no driver for the URI).
STORE_ERRORS: tuple[type[BaseException], ...] = (MlflowException, SQLAlchemyError)


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the sqlite store at the repo root (absolute path).

    A relative sqlite path in MLFLOW_TRACKING_URI is taken from the repo root, not the working
    directory, so a DVC experiment's temporary copy writes to the workspace's file too.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            uri = f"sqlite:///{repo_root() / path}"
    return uri


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local sqlite store sit beside the DB; other stores use their own default."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    return str(db.parent / "mlruns" / re.sub(r"[^A-Za-z0-9._-]+", "_", experiment))


def client() -> MlflowClient:
    """A client on ``tracking_uri()``; the fluent API (log_model, registry) is pointed at the same store."""
    uri = tracking_uri()
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


@contextmanager
def store_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn a store failure (plus the ``also`` types) into a one-line StorageError naming the store."""
    try:
        yield
    except (*STORE_ERRORS, *also) as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {reason(e)}; check MLFLOW_TRACKING_URI") from None


def is_missing(e: MlflowException) -> bool:
    """True for the error of a run or experiment that does not exist."""
    return e.error_code == "RESOURCE_DOES_NOT_EXIST"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the repository the run executes in, or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def commit_tags() -> dict[str, str]:
    """Our tag and MLflow's own (the UI shows the latter as the run's source version)."""
    return {"git.commit": git_commit(), "mlflow.source.git.commit": git_commit()}


def text(value: Any) -> str:
    """A param or tag value: lists and dicts as JSON, capped at MAX_VALUE_CHARS."""
    out = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return out[:MAX_VALUE_CHARS]


def reason(e: BaseException) -> str:
    """The first line of an error, for a one-line message."""
    message = (e.message if isinstance(e, MlflowException) else str(e)).strip()
    return message.splitlines()[0] if message else type(e).__name__


def now_ms() -> int:
    return int(time.time() * 1000)


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a sqlite store) or restored if needed."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        location = artifact_location(mlflow_client.tracking_uri, name)
        try:
            return mlflow_client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another launcher created it first
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


@lru_cache(maxsize=64)
def _experiment_of_run(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.experiment_id


def experiment_of(mlflow_client: MlflowClient, run_id: str) -> str:
    """A run's experiment id, cached: every trial of a worker asks for its parent's."""
    return _experiment_of_run(mlflow_client.tracking_uri, run_id)


def running_runs(mlflow_client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    """Every RUNNING run of the experiments, all pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow_client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs
