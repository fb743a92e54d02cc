"""Workers forked from one process started before the launcher opens the sweep (``pipeline.study.spawn``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.study import launch, sweep
from pipeline.study.config import config_from_params
from pipeline.study.spawn import Workers, run_workers
from tests.study.conftest import REPO, alive, workers_below, write_params


def test_the_workers_process_starts_before_the_sweep_opens_and_none_outlives_a_failed_open(workspace, monkeypatch):
    cfg = config_from_params(load_params("params.yaml"), tracking=False, n_workers=2, threads=1)
    seen: list[int] = []

    def failing_open(*args: object, **kwargs: object) -> None:
        seen.extend(workers_below(os.getpid()))  # already started: it imports while this runs
        raise ConfigError("the study cannot be opened")

    monkeypatch.setattr(launch, "open_sweep", failing_open)
    with pytest.raises(ConfigError):
        sweep._sweep(cfg, resume=None)
    assert len(seen) == 1  # one process for any number of workers; it forks them once given a sweep
    assert not any(alive(pid) for pid in seen)  # stopped and reaped: nothing outlives its launcher's failure


def test_given_no_sweep_it_forks_nothing_exits_0_and_says_nothing(capsys):
    with Workers(2, tracking=False) as workers:
        workers.give("")  # what it sees when its launcher's stdin pipe closes empty
        assert workers.forker.wait(timeout=60) == 0
    assert all(p.pid is None for p in workers.procs)
    assert capsys.readouterr() == ("", "")


def test_each_forked_worker_reports_its_pid_and_exit_code(workspace):
    write_params(workspace.root / "params.yaml", n_trials=4, epochs=1, pruner="none")
    params = load_params(workspace.root / "params.yaml")
    cfg = config_from_params(params, tracking=False, n_workers=2, threads=1, root=workspace.root)
    study, state = launch.open_sweep(cfg)
    with Workers(2, tracking=False) as workers:
        assert run_workers(cfg, state, workers) == [0, 0]
    pids = {p.pid for p in workers.procs}
    assert len(pids) == 2 and workers.forker.pid not in pids  # two processes forked from the one started
    assert {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in study.trials} <= pids
    assert len(study.get_trials(states=launch.COUNTED)) == 4


CHECK_PRELOAD = """
import io, json, os, sys
from pipeline.study import worker
sys.stdin = io.StringIO("")  # no sweep given: it exits after its imports, before forking
_, write = os.pipe()
code = worker.main(["--workers", "2", "--report-fd", str(write), *sys.argv[1:], "-"])
loaded = [m in sys.modules for m in ("optuna.storages._rdb.models", "mlflow.store.tracking.sqlalchemy_store")]
print(json.dumps({"code": code, "loaded": loaded}))
"""


def fresh_python(code: str, tracking_uri: str, *args: str) -> str:
    """The last line ``code`` prints in a new interpreter (nothing imported yet) on this checkout."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1]


@pytest.mark.parametrize(("flags", "expected"), [([], [True, False]), (["--preload-tracking"], [True, True])])
def test_the_forking_process_imports_what_each_workers_first_trial_would_without_touching_a_store(
    tmp_path, flags, expected
):
    """Optuna's table models (and, tracking on, MLflow's SQLAlchemy store) are loaded before the fork,
    once, instead of in every worker's first trial (bench/bench_sweep.py); no store is opened."""
    line = fresh_python(CHECK_PRELOAD, f"sqlite:///{tmp_path / 'mlflow.db'}", *flags)
    assert json.loads(line) == {"code": 0, "loaded": expected}
    assert not (tmp_path / "mlflow.db").exists()  # imported, not connected


def test_the_tracking_preload_leaves_a_tracking_server_alone():
    """An http:// store has no SQLAlchemy models to load: nothing is imported for it, nothing is contacted."""
    code = "import sys; from pipeline import tracking; tracking.preload(); "
    code += "print('mlflow.store.tracking.sqlalchemy_store' in sys.modules)"
    assert fresh_python(code, "http://127.0.0.1:9") == "False"
