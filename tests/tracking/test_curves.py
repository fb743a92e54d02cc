"""Per-epoch curves: per-layer gradient health, batched with the other curves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.lazy import lazy

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it


@dataclass(frozen=True)
class Health:  # the fields of pipeline.nn's LayerHealth
    layer: int
    w_norm: float
    grad_norm: float
    update_ratio: float
    dead_fraction: float | None
    saturated_fraction: float | None


@dataclass(frozen=True)
class Log:  # an EpochLog with the optional health field
    epoch: int
    train_cost: float
    dev_cost: float | None
    dev_error: float | None
    learning_rate: float
    seconds: float
    health: tuple[Health, ...] | None = None


def health_logs(n: int) -> list[Log]:
    """A ReLU first layer (dead units counted) and a sigmoid output layer (saturated units counted)."""
    return [
        Log(
            e,
            1.0 / e,
            1.5 / e,
            0.5,
            0.01,
            0.001,
            (Health(1, 2.0 + e, 0.1 * e, 1e-4 * e, 0.05 * e, None), Health(2, 3.0, 0.2, 1e-3, None, 0.01 * e)),
        )
        for e in range(1, n + 1)
    ]


def history(client: tracking.MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_layer_health_goes_into_the_same_batches_as_the_curves(store, monkeypatch) -> None:
    calls: list[int] = []
    real_log_batch = tracking.MlflowClient.log_batch

    def counting_log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append(len(metrics))
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    def no_single_metrics(*args, **kwargs):
        raise AssertionError("per-call log_metric used")

    monkeypatch.setattr(tracking.MlflowClient, "log_batch", counting_log_batch)
    monkeypatch.setattr(tracking.MlflowClient, "log_metric", no_single_metrics)
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {"n_layers": 2}, flush_every=2) as run:
        for log in health_logs(3):
            run.on_epoch(log)
    # per epoch: 3 curves + 2 layers x (w_norm, grad_norm, update_ratio) + one fraction per layer;
    # the learning rate once; the last call adds train_seconds
    assert calls == [2 * 11 + 1, 11 + 1]
    run_id = run.run_id
    assert history(store, run_id, "w_norm/layer_1") == [(1, 3.0), (2, 4.0), (3, 5.0)]
    assert history(store, run_id, "grad_norm/layer_2") == [(e, 0.2) for e in (1, 2, 3)]
    assert [v for _, v in history(store, run_id, "update_ratio/layer_1")] == pytest.approx([1e-4, 2e-4, 3e-4])
    assert [v for _, v in history(store, run_id, "dead_fraction/layer_1")] == pytest.approx([0.05, 0.10, 0.15])
    assert [v for _, v in history(store, run_id, "saturated_fraction/layer_2")] == pytest.approx([0.01, 0.02, 0.03])
    logged = store.get_run(run_id).data.metrics
    assert "dead_fraction/layer_2" not in logged and "saturated_fraction/layer_1" not in logged  # None: not logged
    assert {f"{f}/layer_{l}" for f in tracking.HEALTH_FIELDS for l in (1, 2)} - set(logged) == {
        "dead_fraction/layer_2",
        "saturated_fraction/layer_1",
    }


def test_a_log_without_health_logs_the_curves_only(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {}) as run:
        run.on_epoch(Log(1, 1.0, 2.0, 0.5, 0.01, 0.001, health=None))
    assert set(store.get_run(run.run_id).data.metrics) == {
        "train_cost",
        "dev_cost",
        "dev_error",
        "learning_rate",
        "train_seconds",
    }
