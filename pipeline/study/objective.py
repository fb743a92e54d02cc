"""The objective: one trial trains the same network the final stage would, and scores it on dev.

A trial's value is its dev error (lower is better). Every epoch's dev cost goes to the pruner;
a trial that diverges (NaN or inf cost) ends PRUNED with its cause recorded, so the study goes
on and the sampler learns to avoid that region. User attributes written per trial: ``worker``
(host:pid, first), ``values`` (the configuration), ``seed_trial`` (the trial number whose random
stream it trained with: its own, or the original's for a heartbeat retry), ``fingerprint``,
``train_error``, ``dev_error``, ``dev_cost``, ``epochs_trained``, ``cause`` (why it stopped
early) and ``mlflow_run_id``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from pipeline import nn
from pipeline.config import Params
from pipeline.data.store import load_normalizer, load_split
from pipeline.errors import ConfigError, DataError
from pipeline.paths import NORMALIZER
from pipeline.study.space import apply_params, architecture, fit_options, suggest, trial_seed
from pipeline.threads import blas_threads_for, limit_blas_threads


def class_count(root: str | Path = ".") -> int:
    """The number of classes: the class names the split stage recorded (the train stage's rule too)."""
    _, doc = load_normalizer(root)
    classes = doc.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise DataError(f"{Path(root) / NORMALIZER}: needs a list of at least two 'classes'; rerun the split stage")
    return len(classes)


@dataclass(frozen=True)
class TrialData:
    """Train and dev data in the network's layout: X is (n_x, m), y is (m,); and the class count."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray
    n_classes: int

    @classmethod
    def read(cls, root: str | Path = ".") -> TrialData:
        """The split stage's train and dev arrays (memory-mapped rows on disk, columns here)."""
        (X, y), (X_dev, y_dev) = load_split("train", root), load_split("dev", root)
        n_classes = class_count(root)
        for name, labels in (("train", y), ("dev", y_dev)):
            if len(labels) == 0 or labels.min() < 0 or labels.max() >= n_classes:
                raise DataError(f"{root}: y_{name} is empty or has labels outside 0..{n_classes - 1}; rerun the split")
        return cls(X.T, y, X_dev.T, y_dev, n_classes)


def train_trial(
    params: Params,
    data: TrialData,
    seed_trial: int,
    callbacks: Sequence[nn.Callback] = (),
    threads: int | None = None,
) -> dict[str, float]:
    """Train the network of ``params`` (a trial's configuration) with the stream of trial ``seed_trial``."""
    arch = architecture(params.model, data.X_train.shape[0], data.n_classes)
    hp = fit_options(params.train)
    threads = threads or blas_threads_for(arch.layer_dims, hp.batch_size or data.X_train.shape[1])
    with limit_blas_threads(threads):
        result = nn.fit(
            data.X_train,
            data.y_train,
            arch,
            hp,
            X_dev=data.X_dev,
            y_dev=data.y_dev,
            seed=trial_seed(params.seed, seed_trial),
            callbacks=list(callbacks),
        )
    scored = result.history[result.best_epoch - 1] if hp.patience else result.history[-1]
    return {
        "train_error": nn.error_rate(data.X_train, data.y_train, result.weights, arch),
        "dev_error": nn.error_rate(data.X_dev, data.y_dev, result.weights, arch),
        "dev_cost": float(scored.dev_cost),
        "epochs_trained": len(result.history),
    }


@dataclass
class Objective:
    """Callable for ``study.optimize``: suggest, train with ``train_trial``, return the dev error.

    ``parent_run_id`` None means no MLflow runs; ``tags`` go on every trial run (the fingerprint).
    ``threads``: BLAS threads for every trial (1 when several workers share the cores); None lets
    each trial choose by its network's size. ``on_start`` runs first thing in every trial (the
    worker releases its claim lock there), ``checkpoint`` before every epoch's report (the worker
    raises KeyboardInterrupt there after Ctrl-C, outside any storage write).
    """

    base: Params
    data: TrialData
    parent_run_id: str | None = None
    on_start: Callable[[], None] | None = None
    checkpoint: Callable[[], None] | None = None
    threads: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            if self.on_start is not None:
                self.on_start()
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            values = self._suggest(trial)
            # RetryHeartbeatStaleTrialCallback records the dead trial's number on its WAITING copy
            # (the first trial's number, for a retry of a retry): train with that trial's stream.
            retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
            seed_trial = trial.number if retry_of is None else int(retry_of)
            trial.set_user_attr("values", values)
            trial.set_user_attr("seed_trial", seed_trial)
            if "fingerprint" in self.tags:
                trial.set_user_attr("fingerprint", self.tags["fingerprint"])
            tags = {**self.tags, **({"optuna.retry_of": retry_of} if retry_of is not None else {})}
            with self._run(trial, values, tags) as run:
                if run is not None:
                    trial.set_user_attr("mlflow_run_id", run.run_id)
                metrics = self._train(trial, apply_params(self.base, values), run, seed_trial)
                for key, value in metrics.items():
                    trial.set_user_attr(key, value)
                if run is not None:  # leaving the block by an exception ends the run KILLED or FAILED
                    run.end("FINISHED", {f"final_{k}": v for k, v in metrics.items()})
        except KeyboardInterrupt:
            # A second Ctrl-C inside a storage write may leave this thread's session mid-transaction.
            trial.storage.remove_session()
            trial.set_user_attr("cause", "interrupted")
            raise
        # The regime (underfit / overfit / good fit) is the report's judgement: the report stage
        # labels every trial and its run, so rewording or retuning it never touches the study.
        return metrics["dev_error"]

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        try:
            return suggest(trial, self.base.tune.space, self.base)
        except ValueError as e:  # e.g. "Cannot set different distribution kind to the same parameter name."
            raise ConfigError(
                f"tune.space no longer matches study '{trial.study.study_name}' ({e}); "
                "set a new tune.study_name for the new space"
            ) from None

    def _train(self, trial: optuna.Trial, params: Params, run: Any, seed_trial: int) -> dict[str, float]:
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
        try:
            return train_trial(params, self.data, seed_trial, callbacks, self.threads)
        except nn.Diverged as e:
            cause = f"diverged at epoch {e.epoch} (cost {e.cost}): lower the learning rate"
            trial.set_user_attr("cause", cause)
            trial.set_user_attr("epochs_trained", e.epoch)
            raise optuna.TrialPruned(cause) from None  # PRUNED in the study, KILLED in MLflow

    def _run(self, trial: optuna.Trial, values: dict[str, Any], tags: Mapping[str, Any]) -> Any:
        if self.parent_run_id is None:
            return contextlib.nullcontext()
        from pipeline import tracking  # imports mlflow: only when tracking is on

        return tracking.TrialRun(self.parent_run_id, trial.study.study_name, trial.number, values, tags)
