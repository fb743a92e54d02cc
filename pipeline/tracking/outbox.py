"""Trial runs held in memory while the tracking server is away, written when it answers again.

Optuna's storage is the study's source of truth; MLflow mirrors it. So a tracking server that
stops answering mid-sweep must not stop the sweep: a ``TrialRun`` that gets no answer
(``store.unreachable``) hands its run to the process's ``OUTBOX`` and goes on training. The
outbox keeps each run whole (its creation, tags, params, metric points with their original
timestamps and steps, its end) and replays it, in order, when the server answers again: tried at
the start of a trial at most every ``RETRY_SECONDS``, and once more when the worker ends
(``flush_outbox``). While the server is known to be away no call is made, so a trial never waits
for it more than one bounded attempt.

Bounded: at most ``MAX_POINTS`` metric points wait; later points of waiting runs are dropped and
counted (``lost_points``), their runs still written. Runs still waiting when the worker ends are
counted as lost (``lost_runs``) and reported by the command (a run created late has no
``mlflow_run_id`` on its trial; it is found by its tags ``optuna.study`` and
``optuna.trial_number``). ``OUTBOX.notify`` (set by the command-line edge) hears each change in
one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from pipeline.tracking.inputs import log_inputs
from pipeline.tracking.store import experiment_of, store_name, tracking_uri, unreachable

MAX_POINTS = 100_000  # metric points held in all (~100 bytes each)
RETRY_SECONDS = 10.0  # between attempts while the server is away


@dataclass
class PendingRun:
    """A run waiting for the server: created (``run_id``) or not yet, with what it still has to write."""

    parent_run_id: str
    run_name: str
    tags: dict[str, str]
    start_time: int
    run_id: str | None = None
    inputs: list[DatasetInput] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    run_tags: list[RunTag] = field(default_factory=list)
    status: str | None = None  # set when the trial ended
    end_time: int | None = None


class Outbox:
    """The waiting runs of this process, and what became of tracking: down since, written, lost."""

    def __init__(self) -> None:
        self.pending: list[PendingRun] = []
        self.points = 0
        self.lost_points = 0
        self.lost_runs = 0
        self.written_late = 0
        self.down_since: float | None = None
        self.error = ""
        self._last_try = 0.0
        self.notify: Callable[[str], None] | None = None

    @property
    def unreachable(self) -> bool:
        return self.down_since is not None

    def due(self) -> bool:
        """May a call to the server be tried now (it is up, or the last attempt is old enough)?"""
        return self.down_since is None or time.monotonic() - self._last_try >= RETRY_SECONDS

    def went_down(self, e: BaseException) -> None:
        self._last_try = time.monotonic()
        if self.down_since is None:
            self.down_since = time.time()
            self.error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            where = store_name(tracking_uri())
            self._say(f"tracking unreachable at {where}: runs wait in memory (at most {MAX_POINTS} points)")

    def hold(self, run: PendingRun) -> PendingRun:
        self.pending.append(run)
        return run

    def add(self, run: PendingRun, metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> None:
        """Add a batch to a waiting run; metric points beyond the bound are dropped and counted."""
        room = max(MAX_POINTS - self.points, 0)
        kept = metrics[:room]
        self.lost_points += len(metrics) - len(kept)
        self.points += len(kept)
        run.metrics += kept
        run.params += params
        run.run_tags += tags

    def drain(self, mlflow_client: MlflowClient, *, force: bool = False) -> bool:
        """Write every ended waiting run (all of them with ``force``); False if the server is still away."""
        if not self.pending or not (force or self.due()):
            return not self.pending
        self._last_try = time.monotonic()
        for run in list(self.pending):
            if run.status is None and not force:
                continue  # its trial still trains and may add to it
            try:
                _replay(mlflow_client, run)
            except Exception as e:
                if not unreachable(e):
                    raise
                self.went_down(e)
                return False
            self.pending.remove(run)
            self.points -= len(run.metrics)
            self.written_late += 1
        if self.down_since is not None:
            self.down_since = None
            self._say(f"tracking reachable again: {self.written_late} waiting run(s) written")
        return not self.pending

    def give_up(self) -> int:
        """Count the runs still waiting as lost (the process ends); return how many."""
        lost = len(self.pending)
        self.lost_runs += lost
        self.pending, self.points = [], 0
        return lost

    def summary(self) -> str:
        """One line on what tracking lost or wrote late; empty if nothing happened."""
        parts = []
        if self.pending:
            parts.append(f"{len(self.pending)} run(s) waiting")
        if self.written_late:
            parts.append(f"{self.written_late} run(s) written late")
        if self.lost_runs:
            parts.append(f"{self.lost_runs} run(s) lost")
        if self.lost_points:
            parts.append(f"{self.lost_points} metric point(s) lost")
        if not parts:
            return ""
        state = "unreachable" if self.unreachable else "reachable"
        return f"tracking ({state}, {store_name(tracking_uri())}): {', '.join(parts)}"

    def _say(self, line: str) -> None:
        if self.notify is not None:
            self.notify(line)


def _replay(mlflow_client: MlflowClient, run: PendingRun) -> None:
    """Write what a waiting run still has to write; safe to call again after a failure part-way."""
    if run.run_id is None:
        experiment = experiment_of(mlflow_client, run.parent_run_id)
        created = mlflow_client.create_run(experiment, start_time=run.start_time, tags=run.tags, run_name=run.run_name)
        run.run_id = created.info.run_id
    if run.inputs:
        log_inputs(mlflow_client, run.run_id, run.inputs)
        run.inputs = []
    if run.metrics or run.params or run.run_tags:
        mlflow_client.log_batch(run.run_id, metrics=run.metrics, params=run.params, tags=run.run_tags)
        run.metrics, run.params, run.run_tags = [], [], []
    if run.status is not None:
        mlflow_client.set_terminated(run.run_id, run.status, end_time=run.end_time)


OUTBOX = Outbox()


def flush_outbox() -> Outbox:
    """Write what waits (one last attempt, however recent the previous one), count the rest as lost;
    return the outbox (``summary()`` says what happened). For a worker that ends."""
    from pipeline.tracking.store import client

    if OUTBOX.pending:
        OUTBOX.drain(client(), force=True)
        OUTBOX.give_up()
    return OUTBOX
