"""The objective: one trial trains the same network the final stage would, and scores it.

A trial's value is its dev error (lower is better), or with ``tune.cv_folds`` = k >= 2 the mean
error over k folds of the train split (``pipeline.study.cv``). Every epoch's dev cost (the
fold-mean validation cost with cross-validation) goes to the pruner; a trial that diverges (NaN
or inf cost) ends PRUNED with its cause recorded, naming the layer that exploded, so the study
goes on and the sampler learns to avoid that region. User attributes written per trial: ``worker``
(host:pid, first), ``values`` (the configuration), ``seed_trial`` (the trial number whose random
stream it trained with: its own, or the original's for a heartbeat retry), ``fingerprint``,
``blas_threads`` (the BLAS threads it trained with), ``train_error``, ``dev_error``, ``dev_cost``,
``epochs_trained``, ``dev_pred`` (the predicted class of every dev example,
``pipeline.study.predictions``), ``cause`` (why it stopped early), ``diverged_layer`` (the layer
that exploded, when it diverged) and ``mlflow_run_id``; with cross-validation also ``cv_error`` (the
value), ``cv_error_std``, ``cv_cost`` and ``cv_fold_errors``. The train and dev numbers always come
from a network trained on all of train and scored on dev: the one the train stage ships.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from pipeline.study import cv, predictions
from pipeline.study.space import apply_params, architecture, fit_options, suggest, trial_seed
from pipeline.threads import choose_blas_threads, limit_blas_threads


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

    def fold(self, validation: np.ndarray) -> TrialData:
        """Train without the examples ``validation`` (indices into train), scored on them: one CV fold."""
        keep = np.ones(self.X_train.shape[1], dtype=bool)
        keep[validation] = False
        # Rows of the row-major train file, so each fold's X is one column-major copy, as fit wants it.
        rows = self.X_train.T
        return TrialData(rows[keep].T, self.y_train[keep], rows[validation].T, self.y_train[validation], self.n_classes)


@dataclass(frozen=True)
class TrialOutcome(Mapping[str, float]):
    """What ``train_trial`` gives: the metrics (a mapping: ``outcome["dev_error"]``) and the network.

    ``weights`` and ``arch`` are the network trained on all of train (the train stage's);
    ``dev_predictions`` its predicted class per dev example, in dev-file order; ``fold_errors`` the
    error on each held-out fold with cross-validation, else ().
    """

    metrics: dict[str, float]
    weights: nn.Weights
    arch: nn.Architecture
    dev_predictions: np.ndarray
    fold_errors: tuple[float, ...] = ()

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    @property
    def value(self) -> float:
        """The trial's score: the mean fold error with cross-validation, else the dev error."""
        return self.metrics["cv_error"] if self.fold_errors else self.metrics["dev_error"]


def train_trial(
    params: Params,
    data: TrialData,
    seed_trial: int,
    callbacks: Sequence[nn.Callback] = (),
    threads: int | None = None,
    *,
    model_callbacks: Sequence[nn.Callback] = (),
    workers: int = 1,
) -> TrialOutcome:
    """Train the network of ``params`` (a trial's configuration) with the stream of trial ``seed_trial``.

    ``callbacks`` see the scoring curve: the dev epochs (holdout), or with ``params.tune.cv_folds``
    >= 2 the fold-mean epochs of the k folds trained in lockstep (``cv.fold_mean_log``). Every fold
    trains with the trial's stream, like the final network: the folds differ in their data only.
    ``model_callbacks`` see the epochs of the network trained on all of train and scored on dev:
    with holdout the same epochs, before ``callbacks``; with cross-validation it trains after the
    folds (a pruned trial never trains it).
    """
    arch = architecture(params.model, data.X_train.shape[0], data.n_classes)
    hp = fit_options(params.train)
    threads = threads or trial_threads(params, data, workers=workers)
    k = params.tune.cv_folds
    fold_errors: tuple[float, ...] = ()
    metrics: dict[str, float] = {}
    with limit_blas_threads(threads):  # the fold sizes are within 1/k of train's: one count for all
        if k >= 2:
            fold_errors, metrics = _cross_validate(params, data, arch, hp, seed_trial, callbacks)
            callbacks = ()
        result = nn.fit(
            data.X_train,
            data.y_train,
            arch,
            hp,
            X_dev=data.X_dev,
            y_dev=data.y_dev,
            seed=trial_seed(params.seed, seed_trial),
            callbacks=[*model_callbacks, *callbacks],
        )
        # Scored under the same limit: a product run with the library's default threads wakes
        # its idle threads, which then spin for a while on the core of the next worker.
        dev_predictions = nn.predict(data.X_dev, result.weights, arch)
        train_error = nn.error_rate(data.X_train, data.y_train, result.weights, arch)
    scored = result.history[result.best_epoch - 1] if hp.patience else result.history[-1]
    metrics = {
        "train_error": train_error,
        "dev_error": float(np.mean(dev_predictions != data.y_dev)),  # nn.error_rate, without a second pass
        "dev_cost": float(scored.dev_cost),
        "epochs_trained": len(result.history),
        **metrics,
    }
    return TrialOutcome(metrics, result.weights, arch, dev_predictions, fold_errors)


def trial_threads(params: Params, data: TrialData, override: int | None = None, *, workers: int = 1) -> int:
    """The BLAS threads a trial of ``params`` trains with: ``override`` (sweep --threads), else
    ``train.blas_threads``, else chosen by the network's size, the ``workers`` and the free cores."""
    arch = architecture(params.model, data.X_train.shape[0], data.n_classes)
    choice = override if override is not None else params.train.blas_threads
    return choose_blas_threads(
        choice, arch.layer_dims, params.train.batch_size, m=data.X_train.shape[1], workers=workers
    )


def _cross_validate(
    params: Params,
    data: TrialData,
    arch: nn.Architecture,
    hp: nn.FitOptions,
    seed_trial: int,
    callbacks: Sequence[nn.Callback],
) -> tuple[tuple[float, ...], dict[str, float]]:
    """Train the k folds in lockstep; return each fold's error and the CV metrics."""
    folds = [data.fold(v) for v in cv.fold_indices(data.y_train, params.tune.cv_folds, params.seed)]

    def run(i: int, fold: TrialData) -> Callable[[nn.Callback], nn.FitResult]:
        def fit(callback: nn.Callback) -> nn.FitResult:
            try:
                seed = trial_seed(params.seed, seed_trial)
                X, y, X_val, y_val = fold.X_train, fold.y_train, fold.X_dev, fold.y_dev
                return nn.fit(X, y, arch, hp, X_dev=X_val, y_dev=y_val, seed=seed, callbacks=[callback])
            except nn.Diverged as e:
                raise cv.FoldDiverged(i + 1, e) from None

        return fit

    def on_epoch(epoch: int, logs: list[list[nn.EpochLog]]) -> None:
        mean = cv.fold_mean_log(epoch, logs, hp.patience)
        for callback in callbacks:
            callback(mean)

    results = cv.run_in_lockstep([run(i, f) for i, f in enumerate(folds)], on_epoch)
    errors = tuple(nn.error_rate(f.X_dev, f.y_dev, r.weights, arch) for f, r in zip(folds, results, strict=True))
    costs = [(r.history[r.best_epoch - 1] if hp.patience else r.history[-1]).dev_cost for r in results]
    metrics = {
        "cv_error": float(np.mean(errors)),
        "cv_error_std": float(np.std(errors, ddof=1)),  # the spread between folds (k >= 2)
        "cv_cost": float(np.mean(costs)),
    }
    return errors, metrics


@dataclass
class Objective:
    """Callable for ``study.optimize``: suggest, train with ``train_trial``, return its score.

    ``parent_run_id`` None means no MLflow runs; ``tags`` go on every trial run (the fingerprint).
    ``threads``: BLAS threads for every trial (sweep --threads); None: ``train.blas_threads``, else
    each trial chooses by its network's size, the sweep's ``workers`` and the free cores; the
    number used is the trial's ``blas_threads`` attribute and run tag. ``on_start`` runs first thing in every trial (the
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
    workers: int = 1  # the sweep's worker processes on this machine, sharing its cores

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
            params = apply_params(self.base, values)
            threads = trial_threads(params, self.data, self.threads, workers=self.workers)
            trial.set_user_attr("blas_threads", threads)
            tags = {
                **self.tags,
                "blas_threads": str(threads),
                **({"optuna.retry_of": retry_of} if retry_of is not None else {}),
            }
            with self._run(trial, values, tags) as run:
                if run is not None and run.run_id is not None:  # None: waiting in the outbox for the server
                    trial.set_user_attr("mlflow_run_id", run.run_id)
                outcome = self._train(trial, params, run, seed_trial, threads)
                for key, value in outcome.items():
                    trial.set_user_attr(key, value)
                if outcome.fold_errors:
                    trial.set_user_attr("cv_fold_errors", list(outcome.fold_errors))
                self._keep_predictions(trial, outcome)
                if run is not None:  # leaving the block by an exception ends the run KILLED or FAILED
                    run.end("FINISHED", {f"final_{k}": v for k, v in outcome.items()})
        except KeyboardInterrupt:
            # A second Ctrl-C inside a storage write may leave this thread's session mid-transaction.
            trial.storage.remove_session()
            trial.set_user_attr("cause", "interrupted")
            raise
        # The regime (underfit / overfit / good fit) is the report's judgement: the report stage
        # labels every trial and its run, so rewording or retuning it never touches the study.
        return outcome.value

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        try:
            return suggest(trial, self.base.tune.space, self.base)
        except ValueError as e:  # e.g. "Cannot set different distribution kind to the same parameter name."
            raise ConfigError(
                f"tune.space no longer matches study '{trial.study.study_name}' ({e}); "
                "set a new tune.study_name for the new space"
            ) from None

    def _keep_predictions(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        # One attribute of about a byte per dev example or less, written before the trial is told
        # COMPLETE: every COMPLETE trial has it (a trial cut off here ends FAIL, without it).
        trial.set_user_attr(predictions.ATTR, predictions.encode(outcome.dev_predictions, self.data.n_classes))

    def _train(self, trial: optuna.Trial, params: Params, run: Any, seed_trial: int, threads: int) -> TrialOutcome:
        cross_validated = params.tune.cv_folds >= 2
        scored = "cv cost" if cross_validated else "dev cost"

        def checkpoint(log: nn.EpochLog) -> None:
            if self.checkpoint is not None:
                self.checkpoint()

        def report(log: nn.EpochLog) -> None:
            checkpoint(log)
            trial.report(log.dev_cost, log.epoch)
            if trial.should_prune():
                cause = f"pruned at epoch {log.epoch}: {scored} {log.dev_cost:.4g} worse than other trials"
                trial.set_user_attr("cause", cause)
                trial.set_user_attr("epochs_trained", log.epoch)
                raise optuna.TrialPruned(cause)

        # The run logs the curves of the network trained on all of train (the one scored on dev);
        # with cross-validation that network trains after the folds, and Ctrl-C is checked there too.
        model_callbacks = [] if run is None else [run.on_epoch]
        if cross_validated:
            model_callbacks.append(checkpoint)
        try:
            return train_trial(params, self.data, seed_trial, [report], threads, model_callbacks=model_callbacks)
        except nn.Diverged as e:
            fold = f" in cv fold {e.fold}" if isinstance(e, cv.FoldDiverged) else ""
            layer = f", layer {e.layer} exploded" if e.layer is not None else ""
            cause = f"diverged at epoch {e.epoch}{fold} (cost {e.cost}{layer}): lower the learning rate"
            trial.set_user_attr("cause", cause)
            trial.set_user_attr("epochs_trained", e.epoch)
            if e.layer is not None:
                trial.set_user_attr("diverged_layer", e.layer)
            raise optuna.TrialPruned(cause) from None  # PRUNED in the study, KILLED in MLflow

    def _run(self, trial: optuna.Trial, values: dict[str, Any], tags: Mapping[str, Any]) -> Any:
        if self.parent_run_id is None:
            return contextlib.nullcontext()
        from pipeline import tracking  # imports mlflow: only when tracking is on

        # The run's inputs: the train and dev arrays (rows, as on disk) with the content hashes the
        # study's fingerprint holds, so MLflow's Dataset column shows what the trial read.
        d, digests = self.data, {k: tags.get(f"fingerprint.{k}_data") for k in ("train", "dev")}
        datasets = None
        if all(digests.values()):
            datasets = {
                "train": (d.X_train.T, d.y_train, digests["train"]),
                "dev": (d.X_dev.T, d.y_dev, digests["dev"]),
            }
        return tracking.TrialRun(
            self.parent_run_id, trial.study.study_name, trial.number, values, tags, datasets=datasets
        )
