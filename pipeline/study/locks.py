"""Locks across processes and machines: who creates a storage, and which launchers are alive.

Two sweeps started at the same instant on a brand-new storage would both create the Optuna
tables (sqlite: "table studies already exists"; PostgreSQL: a duplicate key) and both run
MLflow's migrations ("duplicate column name: step"). So a launcher creates the schema, the study
and its MLflow parent run while holding ``creation_lock`` of each store it writes: ``flock`` on a
lock file beside a sqlite file (one machine), ``pg_advisory_lock`` on PostgreSQL (many machines).
The OS or the server releases both when the holder dies, so a killed launcher blocks no one.

``ClaimLock`` makes counting the trials and creating one a single step across workers.
``LiveLock`` says whether any other launcher is alive on a study storage: each launcher holds it
shared for its whole life, and one that can take it exclusively knows it is alone. Only then are
parent runs left RUNNING by dead launchers closed (``launch.open_sweep``).

How long to wait for a lock: ``$PIPELINE_LOCK_TIMEOUT`` seconds (default 60), also sqlite's
busy timeout; past it, a ``StorageError`` names the lock and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, StorageError

LOCK_TIMEOUT = 60.0  # seconds, unless $PIPELINE_LOCK_TIMEOUT says otherwise
POLL = 0.05  # seconds between attempts at a file lock someone holds


def lock_timeout() -> float:
    """``$PIPELINE_LOCK_TIMEOUT`` (seconds > 0), else 60."""
    raw = os.environ.get("PIPELINE_LOCK_TIMEOUT", "")
    if not raw:
        return LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"PIPELINE_LOCK_TIMEOUT={raw!r}: give the seconds to wait for a storage lock, > 0")
    return value


def advisory_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class FileLock:
    """``flock`` on ``path`` (created if needed): exclusive or shared, with a timeout."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise StorageError(_os_cause(self.path, e)) from None
        return self._fd

    def acquire(self, *, shared: bool = False, timeout: float | None = None) -> None:
        if not self.try_acquire(shared=shared, timeout=lock_timeout() if timeout is None else timeout):
            raise StorageError(
                f"{self.path}: {self.what} is held by another process for over {timeout or lock_timeout():g} s; "
                "wait for the other sweep to start, or raise PIPELINE_LOCK_TIMEOUT"
            )

    def try_acquire(self, *, shared: bool = False, timeout: float = 0.0) -> bool:
        """Take the lock within ``timeout`` seconds (0: one attempt); False if someone else holds it."""
        fd = self._open()
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode)
                return True
            except BlockingIOError:
                if time.monotonic() >= end:
                    return False
                time.sleep(POLL)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None


class PgLock:
    """A PostgreSQL session advisory lock on its own connection: exclusive or shared, with a timeout."""

    def __init__(self, url: str, name: str, what: str) -> None:
        import sqlalchemy

        self.url, self.what, self._key = url, what, advisory_key(name)
        try:
            self._engine = sqlalchemy.create_engine(
                url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 10}
            )
        except ImportError as e:
            raise StorageError(f"{_masked(url)}: no database driver for this URL ({e}); install it") from None
        self._text = sqlalchemy.text
        self._conn: Any = None

    def _query(self, sql: str, *, convert: bool = True) -> Any:
        from pipeline.study.storage import storage_errors  # storage imports this module

        with storage_errors(self.url) if convert else contextlib.nullcontext():  # unreachable, refused: one line
            if self._conn is None:
                self._conn = self._engine.connect()
            result = self._conn.execute(self._text(sql), {"k": self._key})
            value = result.scalar() if result.returns_rows else None  # SET returns none
            self._conn.commit()
        return value

    def acquire(self, *, shared: bool = False, timeout: float | None = None) -> None:
        if not self.try_acquire(shared=shared, timeout=lock_timeout() if timeout is None else timeout):
            raise StorageError(
                f"{_masked(self.url)}: {self.what} is held by another session for over "
                f"{timeout or lock_timeout():g} s; wait for the other sweep, or raise PIPELINE_LOCK_TIMEOUT"
            )

    def try_acquire(self, *, shared: bool = False, timeout: float = 0.0) -> bool:
        """Take the lock within ``timeout`` seconds (0: one attempt). Waiting is the server's queue
        (``lock_timeout``): first come, first served, however many launchers wait."""
        kind = "_shared" if shared else ""
        if timeout <= 0:
            return bool(self._query(f"SELECT pg_try_advisory_lock{kind}(:k)"))
        import sqlalchemy

        self._query(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
        try:
            self._query(f"SELECT pg_advisory_lock{kind}(:k)", convert=False)
        except sqlalchemy.exc.OperationalError as e:
            if "lock timeout" not in str(e):
                raise
            self._conn.rollback()
            return False
        finally:
            with contextlib.suppress(Exception):
                self._query("SET lock_timeout = 0")
        return True

    def release(self, *, shared: bool = False) -> None:
        if self._conn is not None:
            self._query("SELECT pg_advisory_unlock_shared(:k)" if shared else "SELECT pg_advisory_unlock(:k)")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the server went away: the lock went with it
                self._conn.close()
            self._conn = None
        self._engine.dispose()


def _masked(url: str) -> str:
    from pipeline.study.storage import mask_url  # storage imports this module

    return mask_url(url)


def _os_cause(path: Path, e: OSError) -> str:
    folder = path.parent
    if e.errno == errno.EROFS or (e.errno in (errno.EACCES, errno.EPERM) and not os.access(folder, os.W_OK)):
        return f"{folder}: the folder is read-only ({e.strerror}); make it writable, or keep the store elsewhere"
    if e.errno == errno.ENOSPC:
        return f"{folder}: the disk is full ({e.strerror}); free space there, then rerun"
    if e.errno == errno.ENOENT:
        return f"{folder}: no such folder; create it, or check where the store should be"
    return f"{path}: cannot create the lock file ({e.strerror}); check the folder's permissions"


def lock_for(url: str, name: str, what: str) -> FileLock | PgLock | None:
    """The lock ``name`` of a store: a file ``<db>.<name>.lock`` for sqlite, an advisory lock for
    PostgreSQL, None for other backends (nothing to serialize with, or nothing this code can)."""
    from pipeline.study.storage import sqlite_path  # storage imports this module

    path = sqlite_path(url)
    if path is not None:
        return FileLock(path.with_name(f"{path.name}.{name}.lock"), what)
    if url.startswith("postgresql"):
        return PgLock(url, f"pipeline.{name}", what)
    return None


@contextlib.contextmanager
def creation_lock(url: str, what: str = "the lock that serializes creating a study storage") -> Iterator[None]:
    """Hold the store's creation lock while the block runs (see the module docstring)."""
    lock = lock_for(url, "create", what)
    if lock is None:
        yield
        return
    lock.acquire()
    try:
        yield
    finally:
        lock.close()


class LiveLock:
    """Held shared by every live launcher of a study storage; ``alone()`` tells if no other holds it."""

    def __init__(self, url: str) -> None:
        self._lock = lock_for(url, "live", "the lock of live sweeps")

    def alone(self) -> bool:
        """True if no other launcher holds the lock now. Call while holding ``creation_lock``: then
        no other launcher can take it between this check and ``hold``. False for other backends."""
        if self._lock is None or not self._lock.try_acquire():
            return False
        if isinstance(self._lock, PgLock):
            self._lock.release()
        return True

    def hold(self) -> None:
        """Hold the lock shared until ``close`` (or this process ends)."""
        if self._lock is not None:
            self._lock.acquire(shared=True)  # a FileLock converts its exclusive flock of the same descriptor

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()


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
        from pipeline.study.storage import sqlite_path  # storage imports this module

        path = sqlite_path(url)
        if path is not None:
            self._fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        elif url.startswith("postgresql"):
            import sqlalchemy

            self._key = advisory_key(study_name)
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
