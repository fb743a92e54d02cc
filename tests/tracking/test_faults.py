"""A tracking store that fails: one line naming it, and runs that wait while a server is away.

"The server goes away" is simulated by pointing MLFLOW_TRACKING_URI at a closed port on
127.0.0.1 (connection refused at once, with retries off) and "it comes back" by pointing it at
the sqlite store again; the test with a real ``mlflow server`` lives in tests/study/test_faults.py.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from pipeline.nn import EpochLog
from tests.lazy import lazy

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it
mlflow = lazy("mlflow")


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> tracking.outbox.Outbox:
    """A fresh outbox for this test (the process's one is shared), no retries on refused connections."""
    fresh = tracking.outbox.Outbox()
    for module in (tracking.outbox, tracking.trial_run):
        monkeypatch.setattr(module, "OUTBOX", fresh)
    monkeypatch.setattr(tracking, "OUTBOX", fresh)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return fresh


def logs(n: int) -> list[EpochLog]:
    rng = np.random.default_rng(0)
    return [EpochLog(e, *map(float, rng.random(3)), learning_rate=0.01, seconds=0.5) for e in range(1, n + 1)]


@pytest.mark.slow  # a fresh interpreter importing mlflow
def test_the_package_bounds_mlflow_http_retries_unless_the_user_set_them() -> None:
    import os
    import subprocess
    import sys

    names = "os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES'], os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT']"
    code = f"import os, pipeline.tracking; print({names})"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "300"  # the user's value stays; the unset one gets ours
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "300"]


def test_store_failures_are_one_line_naming_the_store_the_cause_and_what_to_do(store) -> None:
    lines = ["(raised as a result of Query-invoked autoflush)", "(sqlite3.OperationalError) database or disk is full"]
    full = mlflow.exceptions.MlflowException("\n".join([*lines, "[SQL: INSERT INTO runs ...]"]))
    error = tracking.store.store_error(full)
    text = str(error)
    assert "\n" not in text and "mlflow.db" in text and "the disk is full" in text and "free space" in text
    assert "(sqlite3.OperationalError) database or disk is full" in text  # the driver's line, not the first
    assert not isinstance(error, tracking.TrackingUnreachable)
    refused = mlflow.exceptions.MlflowException(
        "API request to http://x/api failed with exception Max retries exceeded"
    )
    assert isinstance(tracking.store.store_error(refused), tracking.TrackingUnreachable)


def test_an_unreachable_server_at_start_is_one_line_in_seconds(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port())
    start = time.monotonic()
    with pytest.raises(tracking.TrackingUnreachable, match="tracking server is unreachable") as caught:
        tracking.prepare_study_run("digits", None, {})
    assert time.monotonic() - start < tracking.store.PROBE_SECONDS + 1  # the probe refuses; no MLflow retries at all
    assert "\n" not in str(caught.value) and "--no-tracking" in str(caught.value)


def test_a_trial_run_waits_while_the_server_is_away_and_is_written_when_it_returns(store, box, monkeypatch) -> None:
    uri = tracking.tracking_uri()
    parent = tracking.prepare_study_run("digits", None, {})
    tracking.store.experiment_of(tracking.MlflowClient(uri), parent)  # cached, as a worker's first trial does
    heard: list[str] = []
    box.notify = heard.append
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port())  # the server goes away
    with tracking.TrialRun(parent, "digits", 0, {"learning_rate": 0.01}) as run:
        for log in logs(3):
            run.on_epoch(log)
        run.end("FINISHED", {"final_dev_error": 0.25})
    assert run.run_id is None and box.unreachable and len(box.pending) == 1
    assert heard and heard[0].startswith("tracking unreachable at http://127.0.0.1:")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # it is back
    assert box.drain(tracking.MlflowClient(uri), force=True)
    assert not box.unreachable and box.written_late == 1 and heard[-1].startswith("tracking reachable again")
    client = tracking.MlflowClient(uri)
    experiment = client.get_run(parent).info.experiment_id
    written = client.search_runs([experiment], "tags.`optuna.trial_number` = '0'")
    assert len(written) == 1
    late = written[0]
    assert late.info.status == "FINISHED" and late.data.params == {"learning_rate": "0.01"}
    assert late.data.metrics["final_dev_error"] == 0.25 and late.data.tags["mlflow.parentRunId"] == parent
    assert [m.step for m in client.get_metric_history(late.info.run_id, "dev_cost")] == [1, 2, 3]
    assert "written late" in box.summary()


def test_the_outbox_is_bounded_and_counts_what_it_loses(store, box, monkeypatch) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    monkeypatch.setattr(tracking.outbox, "MAX_POINTS", 5)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port())
    with tracking.TrialRun(parent, "digits", 0, {}, flush_every=1) as run:
        for log in logs(4):  # 3 points an epoch: 12 points, 5 kept
            run.on_epoch(log)
    # 3 curves an epoch, the learning rate once, train_seconds at the end: 14 points, 5 kept
    assert box.points == 5 and box.lost_points == 9
    assert box.give_up() == 1 and box.lost_runs == 1 and not box.pending
    assert "1 run(s) lost" in box.summary() and "9 metric point(s) lost" in box.summary()


def test_while_the_server_is_away_no_call_is_made_and_mark_orphans_waits(store, box, monkeypatch) -> None:
    import optuna

    parent = tracking.prepare_study_run("digits", None, {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port())
    tracking.TrialRun(parent, "digits", 0, {}).end("FINISHED")
    assert box.unreachable and not box.due()

    def no_call(*args, **kwargs):
        raise AssertionError("a call to the server that is known to be away")

    monkeypatch.setattr(tracking.MlflowClient, "create_run", no_call)
    monkeypatch.setattr(tracking.MlflowClient, "search_runs", no_call)
    second = tracking.TrialRun(parent, "digits", 1, {})
    second.end("KILLED")
    assert len(box.pending) == 2
    study = optuna.create_study()
    study.set_user_attr("mlflow_parent_run_id", parent)
    assert tracking.mark_orphans(study) == 0
