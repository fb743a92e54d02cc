"""The data a run read: MLflow dataset inputs with the caller's digest, and the data_hash tag."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.lazy import lazy

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it
mlflow = lazy("mlflow")


def blobs(m: int, n_x: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n_x)).astype(np.float32), rng.integers(0, 3, m)


def inputs_of(client: tracking.MlflowClient, run_id: str) -> dict[str, tracking.mlflow.entities.Dataset]:
    """context -> dataset of a run's inputs."""
    found = {}
    for item in client.get_run(run_id).inputs.dataset_inputs:
        (context,) = [t.value for t in item.tags if t.key == "mlflow.data.context"]
        found[context] = item.dataset
    return found


@pytest.fixture
def no_digest_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow computes a digest by reading the whole array; ours are given, so it must never run."""

    def refuse(*args, **kwargs):
        raise AssertionError("MLflow recomputed a dataset digest")

    import mlflow.data.numpy_dataset

    monkeypatch.setattr(mlflow.data.numpy_dataset, "compute_numpy_digest", refuse)


def test_trial_run_logs_its_datasets_with_the_given_digests(store, no_digest_computed) -> None:
    datasets = {"train": (*blobs(50), "a1b2c3d4e5f6a7b8"), "dev": (*blobs(20, seed=1), "0f1e2d3c4b5a6978")}
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {}, datasets=datasets) as run:
        pass
    found = inputs_of(store, run.run_id)
    assert sorted(found) == ["dev", "train"]
    assert {c: d.digest for c, d in found.items()} == {"train": "a1b2c3d4e5f6a7b8", "dev": "0f1e2d3c4b5a6978"}
    assert {c: d.name for c, d in found.items()} == {"train": "train", "dev": "dev"}
    profile = json.loads(found["train"].profile)
    assert profile["features_shape"] == [50, 4] and profile["targets_shape"] == [50]
    assert '\\"float32\\"' in found["train"].schema
    tags = store.get_run(run.run_id).data.tags
    assert tags["data_hash"] == tracking.data_hash(datasets)
    # the hash follows the digests: other data, another hash; same digests, same hash
    assert tracking.data_hash({**datasets, "dev": (*blobs(20, seed=1), "ffff")}) != tags["data_hash"]
    assert tracking.data_hash(dict(reversed(datasets.items()))) == tags["data_hash"]


def test_a_large_array_is_described_without_being_read(store, no_digest_computed) -> None:
    # 1e6 x 784 float32 (3 GB) without the memory: every row is the same zero-stride view.
    X = np.broadcast_to(np.float32(0), (1_000_000, 784))
    y = np.broadcast_to(np.int64(0), (1_000_000,))
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {}, datasets={"train": (X, y, "big")}) as run:
        pass
    profile = json.loads(inputs_of(store, run.run_id)["train"].profile)
    assert profile["features_shape"] == [1_000_000, 784] and profile["features_nbytes"] == 3_136_000_000


def test_caller_tag_wins_and_runs_without_datasets_have_no_inputs(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    datasets = {"train": (*blobs(10), "abc")}
    with tracking.TrialRun(parent, "digits", 0, {}, {"data_hash": "from-caller"}, datasets=datasets) as run:
        pass
    assert store.get_run(run.run_id).data.tags["data_hash"] == "from-caller"
    with tracking.TrialRun(parent, "digits", 1, {}) as plain:
        pass
    assert store.get_run(plain.run_id).inputs.dataset_inputs == []
    assert "data_hash" not in store.get_run(plain.run_id).data.tags


@pytest.mark.parametrize("digest", ["", "x" * 37])
def test_a_digest_the_store_cannot_hold_is_refused_before_any_run(store, digest: str) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    with pytest.raises(ValueError, match="digest must be 1 to 36 characters"):
        tracking.TrialRun(parent, "digits", 0, {}, datasets={"train": (*blobs(5), digest)})
    exp = store.get_run(parent).info.experiment_id
    assert [r.info.run_id for r in store.search_runs([exp])] == [parent]


class RacingClient:
    """A client whose first log_inputs calls fail the way a SQL store does when another worker
    inserted the same dataset row between MLflow's lookup and its insert (seen in CI, sqlite)."""

    def __init__(self, failures: int, message: str) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def log_inputs(self, run_id: str, datasets: list) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise mlflow.exceptions.MlflowException(self.message)


DUPLICATE = "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"


@pytest.mark.parametrize(
    "message",
    [DUPLICATE, 'duplicate key value violates unique constraint "dataset_pk"'],  # sqlite, PostgreSQL
)
def test_a_dataset_row_inserted_by_another_worker_meanwhile_is_linked_on_a_second_try(message: str) -> None:
    client = RacingClient(failures=1, message=message)
    tracking.inputs.log_inputs(client, "run", [])
    assert client.calls == 2


def test_other_store_errors_and_a_race_that_never_settles_are_raised() -> None:
    client = RacingClient(failures=1, message="RESOURCE_DOES_NOT_EXIST: run 'x' not found")
    with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
        tracking.inputs.log_inputs(client, "run", [])
    assert client.calls == 1
    client = RacingClient(failures=10, message=DUPLICATE)
    with pytest.raises(mlflow.exceptions.MlflowException, match="UNIQUE"):
        tracking.inputs.log_inputs(client, "run", [], attempts=3)
    assert client.calls == 3


def test_trials_starting_together_all_log_the_same_datasets(store) -> None:
    """Eight trial runs log the same dataset rows at the same instant into one sqlite store."""
    datasets = {"train": (*blobs(50), "a1b2c3d4e5f6a7b8"), "dev": (*blobs(20, seed=1), "0f1e2d3c4b5a6978")}
    parent = tracking.prepare_study_run("digits", None, {})
    start = threading.Barrier(8)

    def trial(number: int) -> str:
        start.wait()
        with tracking.TrialRun(parent, "digits", number, {}, datasets=datasets) as run:
            return run.run_id

    with ThreadPoolExecutor(8) as pool:
        run_ids = list(pool.map(trial, range(8)))
    for run_id in run_ids:
        assert {c: d.digest for c, d in inputs_of(store, run_id).items()} == {
            "train": "a1b2c3d4e5f6a7b8",
            "dev": "0f1e2d3c4b5a6978",
        }
