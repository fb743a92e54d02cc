"""Where the MLflow store lives, a client on it, and the plumbing every tracking module shares.

Where the store lives (``tracking_uri``): ``MLFLOW_TRACKING_URI`` if set, else
``sqlite:///<repo root>/mlflow.db`` with an absolute path; a relative sqlite path is taken from the
repo root too (``pipeline.paths.repo_root`` says which folder that is). Artifacts of a local
sqlite store go to ``mlruns/`` beside the database file, never to the working directory: a DVC
experiment's temporary copy is deleted after the experiment.

Everything goes through ``MlflowClient`` with explicit run ids rather than the fluent active-run
stack, so worker processes and threads can attach child runs to a parent they did not start.

A store that fails is a one-line ``StorageError`` naming the store, the cause and what to do
(``store_errors``); a tracking server that cannot be reached is ``TrackingUnreachable``, a
subclass, which a sweep survives (``outbox``). HTTP calls are bounded by the package's defaults
for MLflow's retry variables (``pipeline.tracking.HTTP_DEFAULTS``): a dead server costs about
3 s a call, not MLflow's 4 minutes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StorageError
from pipeline.paths import repo_root

MAX_VALUE_CHARS = 5000  # params allow 6000, tags 8000; one cap for both keeps it simple
STATUSES = ("FINISHED", "KILLED", "FAILED")  # how a run may end
# What a store that cannot be used raises; creating one may also raise OSError (a folder that is
# not writable) or ImportError (no driver for the URI).
STORE_ERRORS: tuple[type[BaseException], ...] = (MlflowException, SQLAlchemyError)
PROBE_SECONDS = 5.0  # a tracking server that does not accept a connection this fast is unreachable

# MLflow logs a store's SQL error with its traceback before raising it; the raised error becomes
# our one line, so the logged copy is noise.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


class TrackingUnreachable(StorageError):
    """The tracking server does not answer (refused, timed out, or 5xx after the bounded retries)."""


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


def preload() -> None:
    """Import the store module ``client()`` will need for ``tracking_uri()``, without connecting.

    MLflow imports its SQLAlchemy store (its table models, alembic) at the first client of a
    database URI. The process that forks a sweep's workers runs this once
    before forking (``worker.fork_workers``), so no worker pays it in its first trial. Best
    effort: a store that cannot be used fails, as one line, at its first real use.
    """
    scheme = urlsplit(tracking_uri()).scheme.split("+")[0]
    if scheme not in DATABASE_ENGINES:  # the schemes MLflow serves from its SQLAlchemy store
        return
    with contextlib.suppress(Exception):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import sqlalchemy.orm

        sqlalchemy.orm.configure_mappers()


def unreachable(e: BaseException) -> bool:
    """True for an HTTP call that got no answer: MLflow's wrapper of a requests failure after its retries."""
    if isinstance(e, MlflowException):
        return e.message.startswith("API request to") and " failed with " in e.message
    return type(e).__module__.startswith(("requests", "urllib3")) or isinstance(e, ConnectionError | TimeoutError)


def store_name(uri: str) -> str:
    """The store in messages: a sqlite file's path, or the URI without its password."""
    if uri.startswith("sqlite:///"):
        return uri.removeprefix("sqlite:///")
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", uri)


# What a store's library says -> (the cause in a person's words, what to do).
CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("database or disk is full", "no space left"), "the disk is full", "free space on its disk and rerun"),
    (
        ("readonly database", "read-only file system"),
        "it is read-only",
        "make its folder writable, or point MLFLOW_TRACKING_URI elsewhere",
    ),
    (("file is not a database", "malformed"), "the file is corrupt", "restore it from a backup, or move it away"),
    (("database is locked",), "another process holds its lock", "stop that process (e.g. mlflow ui), then rerun"),
)


def describe(e: BaseException) -> tuple[str, str]:
    """(cause, what to do) for a failure of the tracking store."""
    if unreachable(e):
        return "the tracking server is unreachable", "start it, check MLFLOW_TRACKING_URI, or run with --no-tracking"
    text = f"{_message(e)} {e.__cause__ or ''}".lower()
    for needles, cause, advice in CAUSES:
        if any(n in text for n in needles):
            return cause, advice
    return "it cannot be used", "check MLFLOW_TRACKING_URI"


def store_error(e: BaseException) -> StorageError:
    """The one-line error of a tracking store failure: the store, the cause, what to do."""
    cause, advice = describe(e)
    kind = TrackingUnreachable if unreachable(e) else StorageError
    return kind(f"MLflow store {store_name(tracking_uri())}: {cause} ({_short(reason(e))}); {advice}")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def store_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn a store failure (plus the ``also`` types) into a one-line StorageError naming the store."""
    try:
        yield
    except StorageError:
        raise
    except (*STORE_ERRORS, ImportError, *also) as e:  # ImportError: no driver for the store's URI
        raise store_error(e) from None
    except Exception as e:
        if not unreachable(e):
            raise
        raise store_error(e) from None


def check_server(uri: str) -> None:
    """For an HTTP tracking URI: refuse within ``PROBE_SECONDS`` a server that does not accept a connection."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise TrackingUnreachable(
            f"MLflow store {store_name(uri)}: the tracking server is unreachable ({e.strerror or e}); "
            "start it, check MLFLOW_TRACKING_URI, or run with --no-tracking"
        ) from None


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


def _message(e: BaseException) -> str:
    return (e.message if isinstance(e, MlflowException) else str(e)).strip()


def reason(e: BaseException) -> str:
    """The telling line of an error, for a one-line message: the database driver's, else the first."""
    lines = _message(e).splitlines()
    driver = [line for line in lines if re.match(r"\((sqlite3|psycopg2|pymysql)\.\w+\)", line)]
    return (driver or lines or [type(e).__name__])[0].strip()


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
