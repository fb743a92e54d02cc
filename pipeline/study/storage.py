"""Where a study lives: the storage URL, the RDB storage with its heartbeat, and the claim lock.

The default storage is the sqlite file ``studies/optuna.db`` under the repository root; a
PostgreSQL URL lets workers on several machines share one study. Both are ``RDBStorage`` with a
heartbeat, so the trial of a killed worker is failed (and its parameters retried) instead of
staying RUNNING forever.

The repository root is ``$PIPELINE_HOME``, else ``$DVC_ROOT`` (DVC sets it for every stage, and
for ``dvc exp run --queue`` it names the real workspace, not the temp copy under
``.dvc/tmp/exps``), else the nearest folder above the working directory holding ``.dvc`` or
``.git``, else the working directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from pipeline.errors import ConfigError, StorageError
from pipeline.paths import STUDY_DB, repo_root

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 30  # a RUNNING trial silent this long belongs to a dead worker
SQLITE_TIMEOUT = 60  # seconds a writer waits for sqlite's lock before "database is locked"


def resolve_url(storage: str | None) -> str:
    """The storage URL for a ``tune.storage`` / ``--storage`` value; None means the default file."""
    if storage is None or storage == "":
        return f"sqlite:///{repo_root() / STUDY_DB}"
    if not re.match(r"^(sqlite|postgresql(\+\w+)?|mysql(\+\w+)?)://", storage):
        raise ConfigError(
            f"tune.storage: unsupported URL '{mask_url(storage)}'; use null (sqlite file studies/optuna.db), "
            "sqlite:///path.db or postgresql+psycopg2://user@host:5432/db"
        )
    return storage


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL, or None for other backends and in-memory sqlite."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///"))


def on_stale_trial(extra: Callable[[optuna.Study, FrozenTrial], None] | None = None, max_retry: int = 3) -> Any:
    """Heartbeat callback: re-enqueue a dead worker's trial with the same parameters, then ``extra``."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=False)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial)  # the WAITING copy records the original number in system_attrs["failed_trial"]
        if extra is not None:
            extra(study, trial)

    return callback


def open_storage(
    url: str,
    *,
    create: bool = False,
    check_schema: bool = True,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> RDBStorage:
    """Open (with ``create``: also create the tables of) an RDB storage with heartbeat.

    Create the tables once, before starting workers: several processes creating the schema of a
    brand-new sqlite or PostgreSQL database at the same moment crash each other. ``check_schema``
    False skips Optuna's schema version check (~0.1 s of migration scripts), for the workers of a
    launcher that already checked it.
    """
    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise ConfigError("heartbeat interval must be >= 1 s and the grace period longer than the interval")
    path = sqlite_path(url)
    if path is not None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise StorageError(f"no study storage at {path}; drop --resume to create it, or check --storage")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    elif url.startswith("postgresql"):
        # pool_pre_ping: a pooled connection dropped by a server restart is replaced, not reused.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        engine_kwargs = {}
    try:
        with warnings.catch_warnings():  # heartbeat is "experimental" since 2.9; the project relies on it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale_trial(on_stale),
                skip_table_creation=not create,
                skip_compatibility_check=not check_schema,
            )
    except (ImportError, ValueError, RuntimeError) as e:
        raise StorageError(f"cannot use study storage {mask_url(url)}: {_first_line(e)}") from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: unreachable, locked, corrupt
        if type(e).__module__.startswith(("sqlalchemy", "psycopg2", "sqlite3")):
            raise StorageError(f"cannot open study storage {mask_url(url)}: {_first_line(e)}") from None
        raise


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class ClaimLock:
    """A lock that every worker of a study holds while it checks the trial cap and creates a trial.

    Counting the trials and asking for a new one must be one step across all workers, or two
    workers that both see one free slot both take it and the study overshoots its cap. sqlite
    (one machine) uses ``flock`` on a file beside the database; PostgreSQL (many machines) uses
    an advisory lock on its own connection. Both are released by the OS or the server when a
    worker dies, so a killed worker never blocks the others. Other backends get a thread lock.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self._held = False
        self._fd: int | None = None
        self._conn: Any = None
        self._engine: Any = None
        self._thread_lock = threading.Lock()
        path = sqlite_path(url)
        if path is not None:
            self._fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        elif url.startswith("postgresql"):
            import sqlalchemy

            self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            self._text = sqlalchemy.text

    def acquire(self) -> None:
        if self._held:
            return
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        elif self._engine is not None:
            if self._conn is None:
                self._conn = self._engine.connect()
            self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            self._conn.commit()
        else:
            self._thread_lock.acquire()
        self._held = True

    def release(self) -> None:
        """Release if held; safe to call twice (the objective releases early, the loop again)."""
        if not self._held:
            return
        self._held = False
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        elif self._engine is not None:
            self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()
        else:
            self._thread_lock.release()

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
