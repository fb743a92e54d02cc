"""Worker processes started before the launcher opens the sweep (``pipeline.study.spawn.Workers``)."""

from __future__ import annotations

import os

import pytest

from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.study import launch, sweep
from pipeline.study.config import config_from_params
from pipeline.study.spawn import Workers
from tests.study.conftest import alive, children


def workers_of(pid: int) -> list[int]:
    """The children of ``pid`` that run ``pipeline.study.worker``."""
    found = []
    for child in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except FileNotFoundError:
            continue
        if b"pipeline.study.worker" in command:
            found.append(child)
    return found


def test_workers_run_while_the_sweep_opens_and_none_outlives_a_failed_open(workspace, monkeypatch):
    cfg = config_from_params(load_params("params.yaml"), tracking=False, n_workers=2, threads=1)
    seen: list[int] = []

    def failing_open(*args: object, **kwargs: object) -> None:
        seen.extend(workers_of(os.getpid()))  # already started: they import while this runs
        raise ConfigError("the study cannot be opened")

    monkeypatch.setattr(launch, "open_sweep", failing_open)
    with pytest.raises(ConfigError):
        sweep._sweep(cfg, resume=None)
    assert len(seen) == 2
    assert not any(alive(pid) for pid in seen)  # stopped and reaped: no worker outlives its launcher's failure


def test_a_worker_given_no_sweep_exits_0_and_says_nothing(capsys):
    with Workers(1, tracking=False) as workers:
        workers.give("")  # what a worker sees when its launcher's stdin pipe closes empty
        assert workers.procs[0].wait(timeout=60) == 0
        workers.ended.get(timeout=10)  # its stderr relayed to the end
    assert capsys.readouterr() == ("", "")
