"""The final model: logged pickle-free, registered, aliased, and served for raw input rows."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.models import load_model, save_model
from pipeline.data.normalize import Normalizer
from pipeline.data.sources import digits_arrays
from pipeline.errors import DataError
from pipeline.nn import Architecture, FitOptions, fit, predict
from tests.lazy import lazy
from tests.tracking.test_curves import health_logs

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it
mlflow = lazy("mlflow")
pd = lazy("pandas")

NAME, ALIAS = "digits-mlp", "champion"


@pytest.fixture
def final_model(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A small network trained on raw digits, saved as the train stage does; returns (stem, raw rows, labels)."""
    raw, y = digits_arrays()
    normalizer = Normalizer.fit(raw[:1500], "standardize", 16.0)
    arch = Architecture.build(64, 10, (16,))
    result = fit(normalizer.transform(raw[:1500]).T, y[:1500], arch, FitOptions(learning_rate=0.01, epochs=5), seed=0)
    stem = tmp_path / "models" / "final"
    save_model(stem, result.weights, arch, {"normalizer": normalizer.to_dict()})
    return stem, raw[1500:1540], y[1500:1540]


def expected_labels(stem: Path, rows: np.ndarray) -> np.ndarray:
    weights, arch, extra = load_model(stem)
    return predict(Normalizer.from_dict(extra["normalizer"]).transform(rows).T, weights, arch)


@pytest.mark.slow  # end to end
def test_final_model_is_pickle_free_registered_and_predicts_raw_rows(store, final_model, monkeypatch) -> None:
    stem, rows, labels = final_model
    parent = tracking.prepare_study_run("digits", None, {})
    registered = tracking.log_final_model(
        stem,
        NAME,
        ALIAS,
        experiment="digits",
        input_example=rows[:3].astype(np.float32),  # as data/prepared/X.npy holds them
        parent_run_id=parent,
        metrics={"test_error": 0.1},
        datasets={"train": (rows, labels, "5eed0001"), "test": (rows[:10], labels[:10], "5eed0002")},
        params={"n_units": 16, "learning_rate": 0.01},
        history=health_logs(3),
    )
    uri = registered.uri
    assert uri == f"models:/{NAME}/1" and registered.alias_moved
    assert registered.reason == f"@{ALIAS} set (no version held it)"
    version = store.get_model_version_by_alias(NAME, ALIAS)
    run = store.get_run(version.run_id)
    assert run.info.run_name == "final-model" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "FINISHED" and run.data.metrics["test_error"] == 0.1
    assert run.data.params == {"n_units": "16", "learning_rate": "0.01"}
    assert [m.step for m in store.get_metric_history(run.info.run_id, "train_cost")] == [1, 2, 3]
    assert len(store.get_metric_history(run.info.run_id, "update_ratio/layer_2")) == 3
    (logged,) = tracking.mlflow.search_logged_models(
        [run.info.experiment_id], filter_string="metrics.test_error < 0.2", output_format="list"
    )
    assert logged.source_run_id == version.run_id and logged.params == {"n_units": "16", "learning_rate": "0.01"}
    assert {m.key: m.value for m in logged.metrics} == {"test_error": 0.1}
    worse = "metrics.test_error > 0.2"
    assert tracking.mlflow.search_logged_models([run.info.experiment_id], filter_string=worse).empty
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert {name: i.dataset.digest for name, i in inputs.items()} == {"train": "5eed0001", "test": "5eed0002"}
    assert [t.value for t in inputs["test"].tags if t.key == "mlflow.data.context"] == ["test"]
    assert run.data.tags["data_hash"] == tracking.data_hash(
        {"train": (rows, labels, "5eed0001"), "test": (rows, labels, "5eed0002")}
    )

    local = Path(tracking.mlflow.artifacts.download_artifacts(uri))
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel  # models-from-code, no pickled object
    assert (local / "mlflow_model.py").is_file() and not list(local.rglob("*.pkl"))
    assert (local / "artifacts" / "final.npz").is_file()
    assert (local / "code" / "pipeline" / "nn" / "network.py").is_file()
    assert not (local / "code" / "pipeline" / "tracking").exists()  # inference code only

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = tracking.mlflow.pyfunc.load_model(uri)
    want = expected_labels(stem, rows)
    assert len(set(want)) > 3 and np.mean(want == labels) > 0.5  # a real classifier, not a constant
    np.testing.assert_array_equal(model.predict(rows), want)
    np.testing.assert_array_equal(model.predict(pd.DataFrame(rows)), want)
    assert '"dtype": "float64", "shape": [-1, 64]' in mlmodel  # the schema, whatever the example's dtype
    with pytest.raises(mlflow.exceptions.MlflowException, match="dtype"):
        model.predict(rows.astype(np.float32))


def test_log_final_model_checks_its_files_first(store, final_model, tmp_path: Path) -> None:
    stem, rows, _ = final_model
    weights, arch, _ = load_model(stem)
    save_model(stem, weights, arch, {})
    with pytest.raises(DataError, match="normalizer"):
        tracking.log_final_model(stem, NAME, ALIAS, experiment="digits", input_example=rows[:2])
    broken = tmp_path / "normalizer.json"
    broken.write_text('{"mode": "standardize", "pixel_range": 16}')  # statistics missing
    with pytest.raises(DataError, match="normalizer"):
        tracking.log_final_model(stem, NAME, ALIAS, experiment="digits", input_example=rows[:2], normalizer=broken)
    with pytest.raises(DataError, match="not found"):
        tracking.log_final_model(tmp_path / "nothing", NAME, ALIAS, experiment="digits", input_example=rows[:2])
    assert store.search_registered_models() == []  # nothing half-logged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_served_model_answers_like_the_final_model(store, final_model, tmp_path: Path) -> None:
    stem, rows, _ = final_model
    tracking.log_final_model(stem, NAME, ALIAS, experiment="digits", input_example=rows[:3])
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 -- closed in the finally below
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@{ALIAS}"),
            *("--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        start_new_session=True,  # its own process group, so the finally ends the workers too
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "model server did not answer within 120 s"
                time.sleep(0.5)
        want = expected_labels(stem, rows).tolist()
        answer = post(f"http://127.0.0.1:{port}/invocations", {"inputs": rows.tolist()})
        assert answer["predictions"] == want
        as_ints = post(f"http://127.0.0.1:{port}/invocations", {"inputs": rows.astype(int).tolist()})  # raw pixels
        assert as_ints["predictions"] == want
        split = {"columns": [f"p{i}" for i in range(rows.shape[1])], "data": rows.tolist()}
        assert post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})["predictions"] == want
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow  # end to end
def test_the_alias_moves_only_to_a_model_at_least_as_good_on_the_same_data(store, final_model) -> None:
    stem, rows, labels = final_model
    same = {"dev": (rows, labels, "d1")}

    def log(dev_error: float, datasets: dict, **kw: object) -> tracking.Registered:
        return tracking.log_final_model(
            stem, NAME, ALIAS, experiment="digits", metrics={"dev_error": dev_error}, datasets=datasets, **kw
        )

    assert log(0.05, same).alias_moved
    worse = log(0.08, same)
    assert (
        not worse.alias_moved
        and worse.reason == f"@{ALIAS} stays on version 1: dev_error 0.0800 > 0.0500 on the same data"
    )
    assert str(store.get_model_version_by_alias(NAME, ALIAS).version) == "1"
    better = log(0.04, same)
    assert better.alias_moved and "dev_error 0.0400 <= 0.0500" in better.reason
    other = log(0.30, {"dev": (rows, labels, "d2")})  # new data: the numbers are not comparable
    assert other.alias_moved and "other data" in other.reason
    forced = log(0.90, {"dev": (rows, labels, "d2")}, force_alias=True)
    assert forced.alias_moved and forced.reason.endswith("moved anyway (forced)")
    assert str(store.get_model_version_by_alias(NAME, ALIAS).version) == "5"
