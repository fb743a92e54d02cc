"""optuna-dashboard (pinned in the dev extras) on a study this pipeline made: the objective is named
dev_error, and the study says what the intermediate values are (the pruner's quantity)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.stages import ui
from tests.data.helpers import write_params

pytestmark = pytest.mark.slow  # a real server process


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_dashboard_names_the_objective_and_the_intermediate_values(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data/raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    write_params(tmp_path, {"train": {"epochs": 2}, "tune": {"n_trials": 2}})
    for stage in ("prepare", "split"):
        assert main([stage, "--params", "params.yaml"]) == 0
    assert main(["tune", "--params", "params.yaml", "--no-tracking"]) == 0
    command = ui.dashboard_command()
    assert command is not None, "optuna-dashboard is a dev dependency: pip install -e '.[dev]'"
    port = ui.free_port()
    server = subprocess.Popen(
        [*command, f"sqlite:///{tmp_path / 'studies/optuna.db'}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                summaries = get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "optuna-dashboard did not start"
                time.sleep(0.3)
        (summary,) = summaries
        study = get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?after=0")
        assert study["objective_names"] == ["dev_error"]
        attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert "dev_cost" in attrs["intermediate_values"] and "pruner" in attrs["intermediate_values"]
        trial = study["trials"][0]
        assert len(trial["intermediate_values"]) == 2  # one per epoch: the dev cost the pruner compares
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
