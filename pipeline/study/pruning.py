"""The median pruner, reading the finished trials once a second instead of at every epoch.

Optuna's ``MedianPruner`` asks the study for its COMPLETE trials at every ``should_prune``: one
storage query per epoch (about 2.6 ms on the default sqlite study, as long as a small network's
epoch; ``bench/bench_sweep.py --only prune-cost`` measures it). A COMPLETE trial never
changes, and while one worker trains a trial no other trial of that worker completes, so the
rule's input can only grow when another process finishes a trial. ``MedianPruner`` here applies
Optuna's rule unchanged to a copy of that list read at the trial's first check and again once
``refresh_seconds`` have passed since the last read:

- one worker: every decision is the one Optuna's pruner makes (nothing completes in between);
- several workers or machines: a trial another process completed is taken into account at most
  ``refresh_seconds`` later, a delay of the same kind as the one between two workers' reports,
  which Optuna's decisions already depend on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

REFRESH_SECONDS = 1.0


class _Completed:
    """The study as ``PercentilePruner.prune`` sees it: its direction and a fixed list of COMPLETE trials."""

    def __init__(self, study: optuna.Study, completed: list[FrozenTrial]) -> None:
        self._study, self._completed = study, completed

    @property
    def direction(self) -> optuna.study.StudyDirection:
        return self._study.direction

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not deepcopy and states == (TrialState.COMPLETE,):  # the one question PercentilePruner asks
            return self._completed
        return self._study.get_trials(deepcopy=deepcopy, states=states)  # anything else: the real study


class MedianPruner(optuna.pruners.MedianPruner):
    """``optuna.pruners.MedianPruner`` with the COMPLETE trials read at most once per ``refresh_seconds``."""

    def __init__(
        self,
        *args: Any,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,  # a fake one in the tests
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._refresh, self._clock = refresh_seconds, clock
        self._trial: tuple[str, int] | None = None  # (study name, trial number) the copy was read for
        self._completed: list[FrozenTrial] = []
        self._read_at = -float("inf")

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        now, key = self._clock(), (study.study_name, trial.number)
        if key != self._trial or now - self._read_at >= self._refresh:
            self._completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            self._trial, self._read_at = key, now
        return super().prune(_Completed(study, self._completed), trial)  # type: ignore[arg-type]
