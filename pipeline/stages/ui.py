"""``pipeline ui``: browse the current study's runs in the MLflow UI, served on 127.0.0.1 only.

Starts ``mlflow server`` against the project's tracking store (``MLFLOW_TRACKING_URI``, else
``<repo root>/mlflow.db``) on a free port or ``--port``, with optuna-dashboard on the study
storage beside it when asked (``--dashboard``), prints the URL of the study's runs in MLflow's
"Model training" view, and waits. Ctrl-C or SIGTERM stops both, whole process groups, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from pipeline.errors import ConfigError, StorageError
from pipeline.paths import BEST_PARAMS, STUDY_WHERE, repo_root

HOST = "127.0.0.1"  # never another interface: the UI edits and deletes runs, and has no login
START_TIMEOUT = 180.0  # seconds until the server answers; mlflow server takes 13-50 s on 2 cores
STOP_TIMEOUT = 20.0  # seconds for a process group to end on SIGTERM before it is killed
# MLflow 3 opens an experiment in its GenAI view (traces, judges) unless the URL asks for the
# classic one: the sidebar's "Model training" switch is this query parameter (server/js routes).
TRAINING_VIEW = "workflowType=machine_learning"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port of the MLflow UI on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--study", help="study whose runs to open (default: the current one, from studies/where.json or best_params)"
    )
    parser.add_argument(
        "--dashboard", action="store_true", help="also start optuna-dashboard on the study storage (when installed)"
    )
    parser.add_argument("--dashboard-port", type=int, default=0, help="port of optuna-dashboard (default: a free one)")


def run(args: argparse.Namespace) -> int:
    dashboard = dashboard_command()
    if args.dashboard and dashboard is None:
        raise ConfigError(
            "--dashboard: optuna-dashboard is not installed; pip install optuna-dashboard or drop --dashboard"
        )
    from pipeline.tracking import tracking_uri  # imports mlflow: after the cheap checks

    params = _load_params(args.params)
    experiment = args.study or (params.tracking.experiment if params else None) or current_study()
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
        print(f"ui: {uri} is a tracking server; its UI is already there")
        _print_runs(uri.rstrip("/"), experiment)
        return 0
    ports = [free_port(args.port)] + ([free_port(args.dashboard_port)] if args.dashboard else [])
    services: list[Service] = []
    # SIGTERM (a scheduler, a test, `kill`) stops the UI exactly as Ctrl-C does.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        services.append(Service("mlflow server", mlflow_command(uri, ports[0]), verbose=args.verbose))
        if args.dashboard:
            cmd = [*dashboard, _study_storage(params), "--host", HOST, "--port", str(ports[1])]
            services.append(Service("optuna-dashboard", cmd, verbose=args.verbose))
        base = f"http://{HOST}:{ports[0]}"
        services[0].wait_until_answering(f"{base}/health")
        print(f"ui: MLflow UI on {base} (store: {_masked(uri)})")
        _print_runs(base, experiment)
        if args.dashboard:
            services[1].wait_until_answering(f"http://{HOST}:{ports[1]}/")
            print(f"ui: optuna-dashboard on http://{HOST}:{ports[1]}/")
        print("ui: Ctrl-C stops it", flush=True)
        while True:
            for service in services:
                service.check_alive()
            time.sleep(1.0)  # nothing to await: a child's exit is polled; a signal ends the sleep at once
    except KeyboardInterrupt:
        pass  # the way out: Ctrl-C or SIGTERM, at any point
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave a server behind
        for service in reversed(services):
            service.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print("ui: stopped")
    return 0


# --- what to open -----------------------------------------------------------------------------


def current_study(root: Path | None = None) -> str | None:
    """The study the pipeline last used: studies/where.json (the tune stage), else best_params.json."""
    root = repo_root() if root is None else root
    for path in (STUDY_WHERE, BEST_PARAMS):
        try:
            name = json.loads((root / path).read_text(encoding="utf-8")).get("study_name")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            return name
    return None


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in MLflow 3's classic "Model training" view."""
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def experiment_id(base: str, name: str) -> str | None:
    """The id of experiment ``name`` on the server at ``base``, or None if it has none by that name."""
    query = urllib.parse.urlencode({"experiment_name": name})
    try:
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30) as r:
            return str(json.load(r)["experiment"]["experiment_id"])
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise StorageError(f"MLflow at {base}: experiment '{name}' could not be read (HTTP {e.code})") from e
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise StorageError(f"MLflow at {base}: experiment '{name}' could not be read ({e})") from e


def _print_runs(base: str, experiment: str | None) -> None:
    exp_id = experiment_id(base, experiment) if experiment else None
    if exp_id is None:
        what = f"no experiment '{experiment}'" if experiment else "no current study (studies/where.json)"
        print(f"ui: {what} in the store yet; run `dvc repro` or `python -m pipeline sweep`, or pass --study")
        print(f"ui: experiments: {base}/#/experiments?{TRAINING_VIEW}")
    else:
        print(f"ui: runs of study '{experiment}': {runs_url(base, exp_id)}")


def _load_params(path: str) -> Any:
    from pipeline.config import load_params

    return load_params(path) if Path(path).exists() else None


def _study_storage(params: Any) -> str:
    from pipeline.study.storage import resolve_url

    return resolve_url(params.tune.storage if params else None)


def _masked(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


# --- the processes ----------------------------------------------------------------------------


def free_port(port: int = 0) -> int:
    """``port`` if it is free on 127.0.0.1, a free one if 0; ConfigError if it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise ConfigError(f"--port {port}: {HOST}:{port} is in use; pick another or leave --port out") from e
        return s.getsockname()[1]


def mlflow_command(uri: str, port: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1 with one worker; artifacts of new experiments beside a sqlite store."""
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--backend-store-uri", uri, "--host", HOST, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):  # as pipeline.tracking places them, not ./mlartifacts in the cwd
        cmd += ["--default-artifact-root", str(Path(uri.removeprefix("sqlite:///")).parent / "mlruns")]
    return cmd


def dashboard_command() -> list[str] | None:
    """How to start optuna-dashboard, or None when it is not installed."""
    beside = Path(sys.executable).with_name("optuna-dashboard")
    found = str(beside) if beside.exists() else shutil.which("optuna-dashboard")
    return [found] if found else None


class Service:
    """A server in its own process group (Ctrl-C in the terminal reaches only us; we stop it)."""

    def __init__(self, name: str, cmd: list[str], *, verbose: bool) -> None:
        self.name = name
        # Its output is shown with --verbose, else kept for the error message if it fails.
        self.log: IO[bytes] | None = None if verbose else tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        env = os.environ.copy()
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no job runner: starts faster
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=repo_root(), start_new_session=True
            )
        except OSError as e:
            raise StorageError(f"{name}: could not start {cmd[0]} ({e})") from e

    def wait_until_answering(self, url: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)  # nothing to await: the server says nothing when it is ready
        raise StorageError(f"{self.name}: no answer on {url} after {timeout:.0f} s{self._last_line()}")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise StorageError(f"{self.name} exited with code {code}{self._last_line()}")

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after STOP_TIMEOUT; reap the leader."""
        group = self.proc.pid  # leader of its own session and group
        _signal_group(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)  # workers the leader started end after it
        if _group_alive(group):
            _signal_group(group, signal.SIGKILL)
        self.proc.wait()
        if self.log is not None:
            self.log.close()

    def _last_line(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        lines = [line.strip() for line in self.log.read().decode(errors="replace").splitlines() if line.strip()]
        return f": {lines[-1]}" if lines else ""


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies, already dead, do not count)."""
    if not Path("/proc/self/stat").exists():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
