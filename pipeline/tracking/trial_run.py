"""A trial's child run (``TrialRun``), and the recovery of runs whose worker died (``mark_orphans``).

Neither stops a sweep when the tracking server goes away: a ``TrialRun`` that gets no answer
waits in ``outbox.OUTBOX`` and trains on; ``mark_orphans`` skips its pass (the next one, or the
next sweep, ends those runs). Any other store failure is a one-line ``StorageError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import optuna
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StorageError
from pipeline.tracking.curves import Curves
from pipeline.tracking.inputs import DATA_HASH_TAG, Datasets, data_hash, dataset_inputs, log_inputs
from pipeline.tracking.outbox import OUTBOX, PendingRun
from pipeline.tracking.store import (
    check_status,
    client,
    commit_tags,
    experiment_of,
    now_ms,
    running_runs,
    store_errors,
    text,
    unreachable,
)

FAIL_CAUSE_TAG = "optuna.fail_cause"


class TrialRun:
    """A trial's child run: link tags at start; params and per-epoch metrics buffered and batched.

    Use as a context manager. Leaving the block by an exception without ``end()`` ends the run
    FAILED (KILLED for KeyboardInterrupt or ``optuna.TrialPruned``) with the cause as a tag, and
    the exception propagates.

    ``datasets`` (context -> (X rows, y, digest), see ``pipeline.tracking.inputs``) are logged as
    the run's inputs when it starts, and their ``data_hash`` is a tag (unless ``tags`` sets one).

    The buffer is flushed every ``flush_every`` epochs, when ``flush_seconds`` passed since the last
    flush, and at the end: one sqlite write costs about 10 ms, so writing per epoch would cost more
    than a small network's epoch, and a trial of up to 200 epochs that ends within 30 s is written
    in one call. A flush is one ``MlflowClient.log_batch`` call however many points it holds:
    MLflow splits it into the store's per-call limits (1000 metrics, 100 params and tags) itself
    (``TrackingServiceClient.log_batch`` in mlflow 3.17.2 chunks with ``chunk_list``).

    ``run_id`` is None while the run waits in the outbox for a server that went away before it
    was created: it gets one when the outbox writes it.
    """

    def __init__(
        self,
        parent_run_id: str,
        study_name: str,
        trial_number: int,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        *,
        datasets: Datasets | None = None,
        flush_every: int = 200,
        flush_seconds: float = 30.0,
    ) -> None:
        self._client = client()
        self._flush_every, self._flush_seconds = flush_every, flush_seconds
        self._curves = Curves()
        self._pending_epochs, self._last_flush, self._last_epoch = 0, time.monotonic(), 0
        self._train_seconds = 0.0
        self.ended = False
        self.run_id: str | None = None
        self._pending: PendingRun | None = None  # set while this run waits for the server
        inputs = dataset_inputs(datasets or {})  # checks the digests before a run exists
        all_tags = {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            "optuna.study": study_name,
            "optuna.trial_number": str(trial_number),
            **commit_tags(),
        }
        if datasets:
            all_tags[DATA_HASH_TAG] = data_hash(datasets)
        all_tags |= {k: text(v) for k, v in (tags or {}).items()}
        # Sent with the first flush: one sqlite write less per trial (mark_orphans writes them for
        # a run whose worker died first).
        self._params = [Param(k, text(v)) for k, v in params.items()]
        name = f"trial-{trial_number}"
        with store_errors():
            if OUTBOX.due():
                try:
                    OUTBOX.drain(self._client)  # the runs that waited go first, in order
                    if not OUTBOX.unreachable:
                        experiment_id = experiment_of(self._client, parent_run_id)
                        self.run_id = self._client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id
                        if inputs:
                            log_inputs(self._client, self.run_id, inputs)
                        return
                except Exception as e:
                    if not unreachable(e):
                        raise
                    OUTBOX.went_down(e)
        # The server is away: this run (or what it has not written yet) waits, whole, for it.
        self._pending = OUTBOX.hold(PendingRun(parent_run_id, name, all_tags, now_ms(), self.run_id, inputs=inputs))

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ended:
            return
        if exc is None:
            self.end("FINISHED")
            return
        killed = isinstance(exc, KeyboardInterrupt | optuna.TrialPruned)
        # The exception in flight matters more than a store failure while recording it; a run left
        # RUNNING that way is ended by mark_orphans.
        with contextlib.suppress(MlflowException, SQLAlchemyError, StorageError):
            self.end("KILLED" if killed else "FAILED", tags={FAIL_CAUSE_TAG: f"{type(exc).__name__}: {exc}"})

    def on_epoch(self, log: Any) -> None:
        """Fit callback (takes a pipeline.nn EpochLog): buffer this epoch's curves (see ``curves``).

        The epochs' total seconds are logged at the end: each stored point costs about 0.1 ms of
        the trial's time.
        """
        self._curves.add(log, now_ms())
        self._pending_epochs += 1
        self._last_epoch = log.epoch
        self._train_seconds += log.seconds
        if self._pending_epochs >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None) -> None:
        """Write the params, buffered epochs, final metrics and tags in one log_batch call."""
        extra = [Metric(k, float(v), now_ms(), self._last_epoch) for k, v in (metrics or {}).items()]
        batch = self._curves.take() + extra
        params, self._params = self._params, []
        run_tags = [RunTag(k, text(v)) for k, v in (tags or {}).items()]
        self._pending_epochs, self._last_flush = 0, time.monotonic()
        if not (batch or params or run_tags):
            return
        if self._pending is None:
            with store_errors():
                try:
                    self._client.log_batch(self.run_id, metrics=batch, params=params, tags=run_tags)
                    return
                except Exception as e:
                    if not unreachable(e):
                        raise
                    OUTBOX.went_down(e)
            self._pending = OUTBOX.hold(PendingRun("", "", {}, now_ms(), self.run_id))
        OUTBOX.add(self._pending, batch, params, run_tags)

    def end(
        self,
        status: str = "FINISHED",
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Flush, log the final metrics (use keys distinct from the per-epoch ones) and tags, end with ``status``."""
        check_status(status)
        if self.ended:
            return
        self.ended = True  # even if the store fails below, never try to end twice
        if self._last_epoch:
            metrics = {"train_seconds": self._train_seconds, **(metrics or {})}
        try:
            self.flush(metrics, tags)
        finally:
            if self._pending is not None:
                self._pending.status, self._pending.end_time = status, now_ms()
            else:
                self._terminate(status)

    def _terminate(self, status: str) -> None:
        with store_errors():
            try:
                self._client.set_terminated(self.run_id, status)
                return
            except Exception as e:
                if not unreachable(e):
                    raise
                OUTBOX.went_down(e)
        self._pending = OUTBOX.hold(PendingRun("", "", {}, now_ms(), self.run_id, status=status, end_time=now_ms()))


def mark_orphans(study: optuna.Study) -> int:
    """End the still-RUNNING runs of finished trials (a worker killed mid-trial); return how many.

    FAIL -> FAILED, PRUNED -> KILLED, COMPLETE -> FINISHED. A trial's run is the one named by its
    ``mlflow_run_id`` user attribute or, for a worker killed before it could set that, a run tagged
    with the study name and the trial's number. Cheap enough to call after every trial: one search
    for RUNNING runs in the experiments of the study's parent runs (user attributes
    ``mlflow_parent_run_id`` and ``mlflow_parent_run_ids``); without those, one lookup per trial.

    It takes the Optuna study itself, not plain values: it needs every finished trial's state,
    params and user attributes, and the study's user attributes, which is the study. While the
    tracking server is away it does nothing and returns 0.
    """
    if not OUTBOX.due():
        return 0
    with store_errors():
        try:
            return _mark_orphans(study)
        except Exception as e:
            if not unreachable(e):
                raise
            OUTBOX.went_down(e)
            return 0


def _mark_orphans(study: optuna.Study) -> int:
    status_of = {
        optuna.trial.TrialState.FAIL: "FAILED",
        optuna.trial.TrialState.PRUNED: "KILLED",
        optuna.trial.TrialState.COMPLETE: "FINISHED",
    }
    finished = {t.number: t for t in study.get_trials(deepcopy=False, states=tuple(status_of))}
    linked = {t.user_attrs["mlflow_run_id"]: t for t in finished.values() if t.user_attrs.get("mlflow_run_id")}
    mlflow_client = client()
    orphans: dict[str, tuple[optuna.trial.FrozenTrial, Run]] = {}  # run id -> (trial, run)
    parents = [study.user_attrs.get("mlflow_parent_run_id"), *study.user_attrs.get("mlflow_parent_run_ids", [])]
    experiments = set()  # earlier sweeps may have logged to other experiments
    for parent in filter(None, parents):
        with contextlib.suppress(MlflowException):  # a parent run deleted since
            experiments.add(experiment_of(mlflow_client, parent))
    if experiments:
        for run in running_runs(mlflow_client, sorted(experiments)):
            tags = run.data.tags
            number = tags.get("optuna.trial_number", "")
            if run.info.run_id in linked:
                orphans[run.info.run_id] = linked[run.info.run_id], run
            elif tags.get("optuna.study") == study.study_name and number.isdigit() and int(number) in finished:
                orphans[run.info.run_id] = finished[int(number)], run
    else:  # no parent recorded: look each linked run up
        for run_id, trial in linked.items():
            try:
                run = mlflow_client.get_run(run_id)
            except MlflowException:  # run deleted, or logged to another store
                continue
            if run.info.status == "RUNNING":
                orphans[run_id] = trial, run
    for run_id, (trial, run) in orphans.items():
        # A run's params wait for its first flush; a worker killed before that never wrote them.
        params = [] if run.data.params else [Param(k, text(v)) for k, v in trial.params.items()]
        cause = RunTag(FAIL_CAUSE_TAG, "worker died; the trial was ended by the Optuna heartbeat check")
        mlflow_client.log_batch(run_id, params=params, tags=[cause])
        mlflow_client.set_terminated(run_id, status_of[trial.state])
    return len(orphans)
