"""Fixtures for the study tests: a tiny workspace, a private MLflow store, a private PostgreSQL.

``workspace`` has no MLflow store (building one runs migrations, ~4 s): tests that track ask
for ``mlflow_store`` too, which copies one migrated template.

The PostgreSQL cluster is started once per session (initdb takes ~3 s) in a temporary folder the
postgres user can write (the tests run as root and postgres refuses to); each test gets its own
database. Trials train on a small synthetic split so a sweep of several processes takes seconds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from tests.data.helpers import repo_params

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def write_split(folder: Path, seed: int = 0, m_train: int = 300, m_dev: int = 60, n_x: int = 16) -> None:
    """Three Gaussian blobs: learnable in a few epochs, hard enough that trials differ."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, m in (("train", m_train), ("dev", m_dev)):
        y = rng.integers(0, 3, m)
        X = 1.5 * np.eye(3, n_x)[y] + rng.normal(size=(m, n_x))
        np.save(folder / f"X_{part}.npy", X.astype(np.float32))
        np.save(folder / f"y_{part}.npy", y.astype(np.int64))
    normalizer = {"mode": "none", "pixel_range": 1.0, "mean": None, "std": None, "classes": ["a", "b", "c"]}
    (folder / "normalizer.json").write_text(json.dumps(normalizer))


def write_params(path: Path, *, n_trials: int = 6, epochs: int = 10, pruner: str = "median", **tune: object) -> None:
    params = copy.deepcopy(repo_params())
    params["train"].update(epochs=epochs, batch_size=32)
    params["tune"].update(n_trials=n_trials, pruner=pruner, startup_trials=2, n_workers=1, storage=None)
    params["tune"].update(tune)
    path.write_text(yaml.dump(params, Dumper=yaml.CSafeDumper))


class Workspace:
    """A folder with params.yaml, data/split and an MLflow store, and a way to run commands in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PIPELINE_HOME": str(root),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "OPENBLAS_NUM_THREADS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    @property
    def default_storage(self) -> str:
        return f"sqlite:///{self.root / 'studies' / 'optuna.db'}"

    def start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # signals in the tests reach only the process they target
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Kill what a failed test left running: launchers and their workers (which have their own sessions)."""
        for proc in self.procs:
            if proc.poll() is None:
                children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
                for pid in map(int, children.split()):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait()

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        proc = self.start(*args)
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)


@pytest.fixture
def workspace_root(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (tmpfs) where there is one: each sqlite commit there costs ~3 ms, not ~25 ms
    of fsync, and a trial commits a dozen times. The tests check the logic, not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="pipeline-study-", dir=shm))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workspace(workspace_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    write_split(workspace_root / "data" / "split")
    write_params(workspace_root / "params.yaml")
    ws = Workspace(workspace_root)
    for key in ("PIPELINE_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, ws.env[key])
    monkeypatch.chdir(workspace_root)
    yield ws
    ws.stop_all()


@pytest.fixture
def mlflow_store(workspace: Workspace, mlflow_template: Path) -> str:
    """The workspace's MLflow store (its MLFLOW_TRACKING_URI), migrated; returns the URI."""
    shutil.copyfile(mlflow_template, workspace.root / "mlflow.db")
    return workspace.env["MLFLOW_TRACKING_URI"]


_storages: dict[str, optuna.storages.RDBStorage] = {}


def study_of(url: str, base: str = "digits-mlp") -> optuna.Study | None:
    """The newest study of a base name (``<base>-<digest>``) in storage ``url``, None if none yet.

    Never creates tables itself (the launcher does, before any worker starts).
    """
    try:
        if url not in _storages:
            _storages[url] = optuna.storages.RDBStorage(url, skip_table_creation=True)
        storage = _storages[url]
        names = [s.study_name for s in storage.get_all_studies() if s.user_attrs.get("base_name") == base]
    except Exception:  # the launcher is still creating the tables
        return None
    return optuna.load_study(study_name=names[-1], storage=storage) if names else None


# --- reading a sweep's study and runs -----------------------------------------------------------

FAST_HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "4")


def read_study(url: str) -> optuna.Study | None:
    """The sweep's study (tune.study_name plus its fingerprint), or None while the launcher creates it."""
    return study_of(url)


def running_trial(url: str, max_epochs: int = 20) -> FrozenTrial | None:
    """A trial that has its MLflow run open and is early in training (not about to finish)."""
    study = read_study(url)
    if study is None:
        return None
    for t in study.get_trials(states=(TrialState.RUNNING,)):
        if "mlflow_run_id" in t.user_attrs and len(t.intermediate_values) < max_epochs:
            return t
    return None


def mlflow_client(ws: Workspace) -> Any:
    from pipeline import tracking  # mlflow takes ~1.5 s to import: not while collecting the fast suite

    return tracking.MlflowClient(ws.env["MLFLOW_TRACKING_URI"])


def trial_runs(ws: Workspace, study: optuna.Study) -> dict[str, Any]:
    client = mlflow_client(ws)
    experiment = client.get_experiment_by_name(study.study_name)  # one experiment per study
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return {r.info.run_id: r for r in runs if r.info.run_name.startswith("trial-")}


def storage_for(backend: str, ws: Workspace, request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        return url, ["--storage", url]
    return ws.default_storage, []  # the default: studies/optuna.db under PIPELINE_HOME


# --- PostgreSQL ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A private PostgreSQL 15 cluster on a free port; yields its base URL (no database)."""
    folder = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
    folder.chmod(0o777)
    data, port = folder / "data", _free_port()
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"
    )
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def new_pg_database(pg_server: str) -> str:
    """A fresh, empty database on the cluster; returns its URL."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(pg_server.replace("postgresql+psycopg2", "postgresql") + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{pg_server}/{name}"


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's cluster."""
    return new_pg_database(pg_server)


def wait_for(predicate, timeout: float = 60, interval: float = 0.05):
    """Poll until predicate() returns something truthy; return it (fail the test on timeout)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


# --- faults: small disks, read-only folders, process trees ---------------------------------------


def _need_root(what: str) -> None:
    if os.geteuid() != 0:  # CI runs as root; a skip would hide the test, so it fails instead
        pytest.fail(f"{what} needs root (mount); run the suite as root, as CI does")


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (created) while the block runs; unmounted after."""
    _need_root("a small disk")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself while the block runs (root ignores chmod)."""
    _need_root("a read-only folder")
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk under ``folder`` to the last byte; returns the filler file (delete it to free space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to fail at close
        for size in (1 << 16, 1 << 10, 1):  # big blocks, then what is left
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a launcher's workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def workers_below(pid: int) -> list[int]:
    """The processes below ``pid`` that run ``pipeline.study.worker``: a launcher's forking process and
    the workers it forked, forker first.

    Only those two levels: what a worker starts for a moment (the ``git`` commands MLflow runs for
    a run's dataset tags) shows the worker's command line until it execs, so it would pass for one
    more worker.
    """
    found = []
    for forker in _running_worker_code(children(pid)):
        found += [forker, *_running_worker_code(children(forker))]
    return found


def _running_worker_code(pids: list[int]) -> list[int]:
    """Those of ``pids`` whose command line runs ``pipeline.study.worker``."""
    found = []
    for child in pids:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):  # it exited after pgrep listed it
            continue
        if b"pipeline.study.worker" in command:
            found.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie has exited: it is not training
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 over a copy of the migrated template store; stop() and start() again."""

    def __init__(self, folder: Path, template: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / "server.db")
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> None:  # an MLflow server takes 20 s and more on 2 loaded cores
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}", "--workers", "1"]
        cmd += ["--artifacts-destination", str(self.folder / "artifacts")]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 -- kept open for the server's life
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
        wait_for(self._healthy, timeout, interval=0.2)

    def _healthy(self) -> bool:
        import urllib.request

        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its uvicorn workers, at once
            self.proc.wait()
        self.proc = None
