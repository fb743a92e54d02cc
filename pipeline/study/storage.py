"""Where a study lives: the storage URL, the RDB storage with its heartbeat, and its failures as one line.

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

import contextlib
import errno
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from pipeline.errors import ConfigError, PipelineError, StorageError
from pipeline.paths import STUDY_DB, repo_root
from pipeline.study.locks import lock_timeout

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 30  # a RUNNING trial silent this long belongs to a dead worker
CREATE_ATTEMPTS = 5  # creating tables raced by a process outside our locks (a dashboard) is retried


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


# A trial whose worker died is retried this many times; a configuration that takes its worker down
# every time (out of memory, say) is then given up as FAIL instead of killing workers for ever.
MAX_RETRIES = 3


def on_stale_trial(
    extra: Callable[[optuna.Study, FrozenTrial], None] | None = None, max_retry: int = MAX_RETRIES
) -> Any:
    """Heartbeat callback: re-enqueue a dead worker's trial with the same parameters, then ``extra``."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=False)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial)  # the WAITING copy records the original number in system_attrs["failed_trial"]
        if extra is not None:
            extra(study, trial)

    return callback


def preload() -> None:
    """Import what the first ``open_storage`` of a process would, without connecting.

    Optuna imports its table models lazily, and SQLAlchemy configures the mappers at the first
    query, in each new process. The process that forks the workers runs this
    once before it knows the URL, so that they share the work done (``worker.fork_workers``).
    Best effort: what fails here fails again, as one line, at the real open.
    """
    with contextlib.suppress(Exception):
        import sqlalchemy.orm
        from optuna.storages._rdb import models  # noqa: F401  (RDBStorage's own lazy import)

        sqlalchemy.orm.configure_mappers()


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

    Create the tables once, before starting workers, holding ``locks.creation_lock`` (the
    launcher does): several processes creating the schema of a brand-new database at the same
    moment crash each other. A new sqlite file is built beside its place and linked in whole, so
    a reader (optuna-dashboard) never sees half a schema; a table creation raced by a process
    outside our locks is retried. ``check_schema`` (the launcher) also checks an existing sqlite
    file with ``PRAGMA quick_check`` on a read-only connection, so a corrupt file is refused
    untouched; False skips that and Optuna's schema version check (~0.1 s), for the workers of a
    launcher that checked. Every failure is a one-line ``StorageError`` (see ``storage_error``).
    """
    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise ConfigError("heartbeat interval must be >= 1 s and the grace period longer than the interval")
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"no study storage at {path}; drop --resume to create it, or check --storage")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": lock_timeout()}}
    elif url.startswith("postgresql"):
        # pool_pre_ping: a pooled connection dropped by a server restart is replaced, not reused.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        engine_kwargs = {}
    with storage_errors(url):
        if path is not None and check_schema and path.exists():
            _check_sqlite(path)
        create_tables = create
        if path is not None and create:
            if not path.exists():
                _create_sqlite(path)
            # Never create tables in place in a file someone else made: they may be creating them.
            # A file still empty after the wait was made by a reader (sqlite makes the file it is
            # asked to open): it is filled in one transaction, so that reader never sees the
            # tables without Optuna's version row, which it would stamp too and fail on.
            create_tables = not _has_tables(path, wait=2.0) and not _fill_sqlite(path)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                with warnings.catch_warnings():  # heartbeat is "experimental" since 2.9; the project relies on it
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period,
                        heartbeat_stale_trial_callback=on_stale_trial(on_stale),
                        skip_table_creation=not create_tables,
                        skip_compatibility_check=not check_schema,
                    )
                if path is not None:
                    _sync_at_trial_ends(storage)
                return storage
            except (ImportError, ValueError, RuntimeError) as e:  # no driver, a bad URL, a newer schema
                raise StorageError(f"cannot use study storage {mask_url(url)}: {_first_line(e)}") from None
            except Exception as e:
                if not (create and attempt < CREATE_ATTEMPTS and _creation_race(e)):
                    raise
                time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def use_wal(path: Path) -> None:
    """Put a sqlite study file in write-ahead-log mode while a sweep runs (``rest`` ends it).

    In sqlite's default rollback-journal mode every write locks the whole file, readers
    included, for its fsyncs, and a trial writes once per epoch (its intermediate value): two
    workers then queue on each other. In WAL mode readers never wait and a commit is one append.
    ``bench/bench_sweep.py --only storage`` on this project's 2-core machine: 100 reports between
    1 ms steps took 0.42-0.50 s alone and 1.7-1.8x that beside a second worker in rollback mode;
    0.35-0.38 s, and 0.96-1.39x beside another, in WAL mode. The connections opened in WAL mode
    sync at trial ends, not at each commit (``sync_trial_end``).
    """
    conn = sqlite3.connect(path, timeout=lock_timeout())
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _sync_at_trial_ends(storage: RDBStorage) -> None:
    """Have ``storage``'s connections to a WAL-mode file commit without an fsync each (synchronous=NORMAL).

    With sqlite's default (FULL) every commit waits for the disk, and a trial commits once per
    epoch (its intermediate value): ``bench/bench_sweep.py --only storage`` on the project's
    2-core machine timed a trial of 100 reports between 1 ms steps at 0.26 s with every commit
    synced and 0.17 s synced at its end, 0.23 and 0.18 s beside a second worker. NORMAL keeps
    the file consistent whatever happens (WAL frames carry checksums) and loses nothing when a
    process dies; only a power cut or an OS crash can lose commits made since the last sync.
    The worker syncs at the end of each trial (``sync_trial_end``), so what a power cut loses
    is the running trials' latest epochs, and those trials are failed and retried by the
    heartbeat anyway: a finished trial survives a power cut as before. A connection to a file
    in rollback-journal mode keeps FULL (NORMAL there can corrupt the file in a power cut).
    The engine's first connection, opened by RDBStorage before this hook existed, is dropped
    so that every later one passes through it.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()


def sync_trial_end(url: str) -> None:
    """Make what a sqlite study's WAL holds durable: one fsync of the ``-wal`` file, after a trial ends.

    An fsync covers the whole file, so every commit before it (the trial's state and value,
    whichever process made them) is on disk once this returns. Nothing to do for another
    backend or a file not in WAL mode (its connections sync every commit).
    """
    path = sqlite_path(url)
    if path is not None:
        _fsync_wal(path)


def _fsync_wal(path: Path) -> None:
    try:
        fd = os.open(path.with_name(path.name + "-wal"), os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rest(storage: RDBStorage, path: Path) -> bool:
    """After a sweep: close ``storage``'s connections and put the file back in rollback-journal mode.

    At rest the study is then one self-contained file again, with no ``-wal`` or ``-shm`` beside
    it: a plain copy of it is whole, and DVC hashes the same bytes whoever opens it next. Only
    possible with no other connection open; False when one is (another sweep, a dashboard): the
    file stays in WAL mode, as safe, until a later sweep ends alone; what the sweep wrote last
    (its stop cause) is synced to disk first, either way.
    """
    _fsync_wal(path)  # before the close: the last connection's close checkpoints and deletes the log
    storage.engine.dispose()
    conn = sqlite3.connect(path, timeout=0)
    try:
        return conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    except sqlite3.OperationalError:  # "database is locked": someone else has it open
        return False
    finally:
        conn.close()


def _check_sqlite(path: Path) -> None:
    """Refuse a file that is not a healthy sqlite database, reading it only."""
    if path.stat().st_size == 0:
        return  # an empty file is an empty database: sqlite (and Optuna) start it afresh
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=lock_timeout())
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if verdict != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")


def _has_tables(path: Path, wait: float = 0.0) -> bool:
    """Whether the sqlite file holds Optuna's tables, waiting up to ``wait`` s for a creator to finish.

    Finished means the tables and Optuna's Alembic version row. Another program opening the new
    file with Optuna's defaults (a dashboard, a script) creates the tables, then stamps the row; a
    second process that stamps in between makes that program fail on the row's unique key. A file
    still empty may be such a creator that has not written yet, so it is waited for too.
    """
    end = time.monotonic() + wait
    while True:
        tables, stamped = _schema_state(path)
        if stamped or time.monotonic() >= end:
            return tables
        time.sleep(0.05)


def _schema_state(path: Path) -> tuple[bool, bool]:
    """(Optuna's tables exist, its Alembic version row exists), read without writing."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=lock_timeout())
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        stamped = "alembic_version" in names and conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0
    finally:
        conn.close()
    return "version_info" in names, bool(stamped)


def _create_sqlite(path: Path) -> None:
    """Build the tables of a new sqlite file beside ``path``, then link the whole file into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{path.parent}: cannot create the study folder ({e.strerror}); check --storage") from None
    # FileExistsError: another process created it first, so theirs is used
    with _complete_beside(path) as new, contextlib.suppress(FileExistsError):
        os.link(new, path)


@contextlib.contextmanager
def _complete_beside(path: Path) -> Iterator[Path]:
    """A new sqlite file beside ``path`` with Optuna's tables and version rows, removed afterwards."""
    new = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        RDBStorage(f"sqlite:///{new}").engine.dispose()
        yield new
    finally:
        with contextlib.suppress(OSError):
            new.unlink()


def _fill_sqlite(path: Path) -> bool:
    """Give an empty sqlite file Optuna's whole schema and version rows in one transaction.

    Optuna creates its tables, commits, then stamps Alembic's version row in a second
    transaction; another process opening the file in between stamps too, and one of the two fails
    on the row's unique key. Here a complete database is built beside ``path`` and its schema and
    rows are copied in under one write lock. False (nothing written) when the file is not empty:
    it holds someone's tables, which Optuna's own creation (it skips tables that exist) completes.
    """
    with _complete_beside(path) as template:
        conn = sqlite3.connect(path, timeout=lock_timeout(), isolation_level=None)
        try:
            conn.execute("ATTACH DATABASE ? AS template", (str(template),))
            conn.execute("BEGIN IMMEDIATE")  # the write lock first: no one writes between the check and the copy
            try:
                if conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()[0]:
                    return False
                # rowid order is creation order (a table before its indexes); sqlite's own objects
                # (autoindexes: no sql; sqlite_sequence) come with the statements that made them.
                schema = conn.execute(
                    "SELECT type, name, sql FROM template.sqlite_master"
                    " WHERE sql IS NOT NULL AND name NOT GLOB 'sqlite_*' ORDER BY rowid"
                ).fetchall()
                for _, _, sql in schema:
                    conn.execute(sql)
                for kind, name, _ in schema:
                    if kind == "table":
                        conn.execute(f'INSERT INTO main."{name}" SELECT * FROM template."{name}"')
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            conn.close()
    return True


def _creation_race(e: BaseException) -> bool:
    text = " ".join(str(x) for x in (e, e.__cause__) if x is not None)
    return any(s in text for s in ("already exists", "duplicate key", "UNIQUE constraint failed"))


# What the database libraries say -> (the cause in a person's words, what to do). {where}: the
# file's folder (sqlite) or the URL; {timeout}: the lock timeout.
CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("database or disk is full", "no space left"), "the disk is full", "free space in {where}, then rerun"),
    (
        ("readonly database", "read-only file system"),
        "it is read-only",
        "make {where} writable, or pass --storage with a writable place",
    ),
    (
        ("file is not a database", "malformed", "not a database"),
        "the file is corrupt and was left as it is",
        "restore it from a backup, or move it away to start a new study",
    ),
    (
        ("database is locked",),
        "another process holds its lock for over {timeout:g} s",
        "stop that process (a sweep, optuna-dashboard, sqlite3) or raise PIPELINE_LOCK_TIMEOUT",
    ),
    (("no such table",), "it holds no Optuna tables", "drop --resume to create a study, or check --storage"),
    (("unable to open database file",), "it cannot be opened", "check that {where} exists and is writable"),
    (("disk i/o error",), "a write failed (a full disk?)", "free space in {where} or check the disk, then rerun"),
    (
        ("could not connect", "connection refused", "server closed the connection", "timeout expired"),
        "the database server is unreachable",
        "start it, or check the host and port in --storage",
    ),
    (("could not translate host name",), "the host is unknown", "check the host in --storage"),
    (("password authentication failed",), "the login was refused", "set PGPASSWORD or a ~/.pgpass entry"),
    (("does not exist",), "the database does not exist", "create it (createdb) or check --storage"),
)


def storage_error(url: str, e: BaseException) -> StorageError:
    """The one-line error for a failure of storage ``url``: the file (or URL), the cause, what to do."""
    path = sqlite_path(url)
    where = str(path.parent) if path is not None else mask_url(url)
    detail = _first_line(e.__cause__ if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ else e)
    lowered = detail.lower()
    for needles, cause, advice in CAUSES:
        if any(n in lowered for n in needles):
            fill = {"where": where, "timeout": lock_timeout()}
            cause, advice = cause.format(**fill), advice.format(**fill)
            return StorageError(f"study storage {path or where}: {cause} ({detail}); {advice}")
    return StorageError(f"study storage {path or where}: {detail}; check --storage (or tune.storage)")


STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT)  # OS errors that are the disk's


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a failure of storage ``url`` (Optuna, SQLAlchemy, sqlite3, a full disk) into ``storage_error``.

    A ``PipelineError`` passes through as it is (the MLflow store's own failures are already one
    line naming that store).
    """
    try:
        yield
    except PipelineError:
        raise
    except (optuna.exceptions.StorageInternalError, sqlite3.Error) as e:
        raise storage_error(url, e) from None
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        raise storage_error(url, e) from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: unreachable, locked, corrupt
        if type(e).__module__.startswith(("sqlalchemy", "psycopg2")):
            raise storage_error(url, e) from None
        raise


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
