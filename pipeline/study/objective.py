"""The objective: one trial trains the same network the final stage would, and scores it on dev.

A trial's value is its dev error (lower is better). Every epoch's dev cost goes to the pruner;
a trial that diverges (NaN or inf cost) ends PRUNED with its cause recorded, so the study goes
on and the sampler learns to avoid that region. User attributes written per trial: ``values``
(the configuration), ``train_error``, ``dev_error``, ``dev_cost``, ``epochs_trained``,
``cause`` (why it stopped early), ``worker`` (host:pid) and ``mlflow_run_id``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from pipeline import nn
from pipeline.config import Params
from pipeline.errors import ConfigError, DataError
from pipeline.io import load_npy
from pipeline.study.space import apply_params, architecture, fit_options, suggest, trial_seed
from pipeline.threads import blas_threads_for, limit_blas_threads

SPLIT_FILES = ("X_train", "y_train", "X_dev", "y_dev")


@dataclass(frozen=True)
class Split:
    """Train and dev data in the network's layout: X is (n_x, m), y is (m,)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray

    @property
    def n_classes(self) -> int:
        return max(2, int(max(self.y_train.max(), self.y_dev.max())) + 1)


def load_split(folder: str | Path) -> Split:
    """Read the split stage's train and dev arrays (rows on disk, columns in memory)."""
    folder = Path(folder)
    arrays = {name: load_npy(folder / f"{name}.npy", mmap=name.startswith("X")) for name in SPLIT_FILES}
    for part in ("train", "dev"):
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(y) == 0:
            raise DataError(f"{folder}: X_{part} {X.shape} and y_{part} {y.shape} do not match; rerun the split stage")
    return Split(arrays["X_train"].T, arrays["y_train"], arrays["X_dev"].T, arrays["y_dev"])


@dataclass
class Objective:
    """Callable for ``study.optimize``: suggest, train with ``pipeline.nn.fit``, return dev error.

    ``parent_run_id`` None means no MLflow runs. ``threads``: BLAS threads for every trial (1 when
    several workers share the cores); None lets each trial choose by its network's size.
    ``on_start`` runs first thing in every trial
    (the worker releases its claim lock there), ``checkpoint`` before every epoch's report (the
    worker raises KeyboardInterrupt there after Ctrl-C, outside any storage write).
    """

    base: Params
    data: Split
    parent_run_id: str | None = None
    on_start: Callable[[], None] | None = None
    checkpoint: Callable[[], None] | None = None
    threads: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        run = None
        try:
            if self.on_start is not None:
                self.on_start()
            try:
                values = suggest(trial, self.base.tune.space, self.base)
            except ValueError as e:  # e.g. "Cannot set different distribution kind to the same parameter name."
                raise ConfigError(
                    f"tune.space no longer matches study '{trial.study.study_name}' ({e}); "
                    "set a new tune.study_name for the new space"
                ) from None
            trial.set_user_attr("values", values)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            params = apply_params(self.base, values)
            run = self._open_run(trial, values)
            if run is not None:
                trial.set_user_attr("mlflow_run_id", run.run_id)
            metrics = self._train(trial, params, run)
        except optuna.TrialPruned as e:
            self._end_run(run, "KILLED", {"epochs_trained": trial.user_attrs.get("epochs_trained", 0)}, str(e))
            raise
        except nn.Diverged as e:
            cause = f"diverged at epoch {e.epoch} (cost {e.cost}): lower the learning rate"
            trial.set_user_attr("cause", cause)
            trial.set_user_attr("epochs_trained", e.epoch)
            self._end_run(run, "FAILED", {"epochs_trained": e.epoch}, cause)
            raise optuna.TrialPruned(cause) from None
        except KeyboardInterrupt:
            # A second Ctrl-C inside a storage write may leave this thread's session mid-transaction.
            trial.storage.remove_session()
            try:
                trial.set_user_attr("cause", "interrupted")
            finally:
                self._end_run(run, "KILLED", {}, "interrupted")
            raise
        except BaseException as e:
            self._end_run(run, "FAILED", {}, f"{type(e).__name__}: {e}")
            raise
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        # The regime (underfit / overfit / good fit) is the report's judgement: the report stage
        # labels every trial and its run, so rewording or retuning it never touches the study.
        if run is not None:
            run.end("FINISHED", {f"final_{k}": v for k, v in metrics.items()})
        return metrics["dev_error"]

    def _train(self, trial: optuna.Trial, params: Params, run: Any) -> dict[str, float]:
        d = self.data
        arch = architecture(params.model, d.X_train.shape[0], d.n_classes)
        hp = fit_options(params.train)

        def report(log: nn.EpochLog) -> None:
            if self.checkpoint is not None:
                self.checkpoint()
            trial.report(log.dev_cost, log.epoch)
            if trial.should_prune():
                cause = f"pruned at epoch {log.epoch}: dev cost {log.dev_cost:.4g} worse than other trials"
                trial.set_user_attr("cause", cause)
                trial.set_user_attr("epochs_trained", log.epoch)
                raise optuna.TrialPruned(cause)

        callbacks = [report] if run is None else [run.on_epoch, report]
        seed = trial_seed(self.base.seed, trial.number)
        threads = self.threads or blas_threads_for(arch.layer_dims, hp.batch_size or d.X_train.shape[1])
        with limit_blas_threads(threads):
            result = nn.fit(
                d.X_train, d.y_train, arch, hp, X_dev=d.X_dev, y_dev=d.y_dev, seed=seed, callbacks=callbacks
            )
        scored = result.history[result.best_epoch - 1] if hp.patience else result.history[-1]
        return {
            "train_error": nn.error_rate(d.X_train, d.y_train, result.weights, arch),
            "dev_error": nn.error_rate(d.X_dev, d.y_dev, result.weights, arch),
            "dev_cost": float(scored.dev_cost),
            "epochs_trained": len(result.history),
        }

    def _open_run(self, trial: optuna.Trial, values: dict[str, Any]) -> Any:
        if self.parent_run_id is None:
            return None
        from pipeline import tracking  # imports mlflow: only when tracking is on

        # RetryHeartbeatStaleTrialCallback records the dead trial's number on its WAITING copy.
        retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        tags = {"optuna.retry_of": retry_of} if retry_of is not None else {}
        return tracking.TrialRun(self.parent_run_id, trial.study.study_name, trial.number, values, tags)

    @staticmethod
    def _end_run(run: Any, status: str, metrics: dict[str, float], cause: str | None) -> None:
        if run is not None:
            run.end(status, metrics, {"optuna.fail_cause": cause} if cause else None)
