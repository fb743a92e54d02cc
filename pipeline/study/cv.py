"""k-fold cross-validation over the train split (``tune.cv_folds``): the folds, and training them in lockstep.

``fold_indices`` deals the training examples into k stratified folds, seeded by the study seed
only, so every trial of a study is scored on the same folds (paired, comparable scores).

``run_in_lockstep`` trains the k folds epoch by epoch together: fold 1 trains its epoch e, then
fold 2 its epoch e, ..., and only then does the caller see epoch e of every fold (``on_epoch``),
so the pruner judges the fold-mean curve, not a running mean over the first folds, and a pruned
trial stops all its folds at once. Each fold is an ``nn.fit`` call in its own thread, but exactly
one thread computes at any moment (a baton passes between them and the caller), so a fold's
numbers are bit for bit those of the same fit run alone, and the caller's own thread does every
storage write and receives every signal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from pipeline import nn
from pipeline.errors import ConfigError

T = TypeVar("T")
# The folds' random stream: [seed, CV_STREAM] is never a trial's [seed, trial number] (space.trial_seed).
CV_STREAM = 2**62 + 0x6376


def fold_indices(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """The validation indices (sorted) of ``k`` stratified folds of labels ``y``.

    Each class's examples are shuffled and dealt round-robin, the deal running on from one class
    to the next, so every class is spread over the folds as evenly as possible (counts differ by at
    most one) and fold sizes too. The folds depend on ``seed``, ``k`` and the labels only.
    """
    y = np.asarray(y)
    if k > len(y):
        raise ConfigError(f"tune.cv_folds: {k} folds need at least {k} training examples, the train split has {len(y)}")
    rng = np.random.default_rng([seed, CV_STREAM])
    fold_of = np.empty(len(y), dtype=np.int64)
    dealt = 0
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = (dealt + np.arange(len(members))) % k
        dealt += len(members)
    return [np.flatnonzero(fold_of == f) for f in range(k)]


class _Stopped(Exception):
    """Raised inside a fold's fit callback to end that fold when the caller stops."""


class FoldDiverged(nn.Diverged):
    """A fold's training diverged: ``nn.Diverged`` with the fold (1-based) in the message."""

    def __init__(self, fold: int, error: nn.Diverged) -> None:
        self.fold = fold
        super().__init__(error.epoch, error.cost, error.layer)
        where = f" (layer {error.layer} exploded)" if error.layer is not None else ""
        message = f"cost became {error.cost} at epoch {error.epoch} in cv fold {fold}{where}: lower the learning rate"
        self.args = (message,)

    def __reduce__(self) -> tuple[type, tuple[int, nn.Diverged]]:
        return type(self), (self.fold, nn.Diverged(self.epoch, self.cost, self.layer))


class _Lockstep(Generic[T]):
    def __init__(self, runs: Sequence[Callable[[nn.Callback], T]]) -> None:
        n = len(runs)
        self.runs = runs
        self.cond = threading.Condition()
        self.turn: int | None = None  # the fold that may compute now; None: the caller
        self.stop = False
        self.done = [False] * n
        self.results: list[T | None] = [None] * n
        self.errors: list[BaseException | None] = [None] * n
        self.logs: list[list[nn.EpochLog]] = [[] for _ in range(n)]

    def _wait_for_turn(self, i: int) -> None:  # with self.cond held
        while self.turn != i and not self.stop:
            self.cond.wait()
        if self.stop:
            raise _Stopped

    def _hand_back(self) -> None:  # with self.cond held
        self.turn = None
        self.cond.notify_all()

    def fold(self, i: int) -> None:
        def callback(log: nn.EpochLog) -> None:
            with self.cond:
                self.logs[i].append(log)
                self._hand_back()
                self._wait_for_turn(i)

        try:
            with self.cond:
                self._wait_for_turn(i)
            self.results[i] = self.runs[i](callback)
        except _Stopped:
            pass
        except BaseException as e:  # handed to the caller's thread, which raises it
            self.errors[i] = e
        with self.cond:
            self.done[i] = True
            self._hand_back()

    def give_turn(self, i: int) -> None:
        with self.cond:
            self.turn = i
            self.cond.notify_all()
            while self.turn is not None:
                self.cond.wait()
        if self.errors[i] is not None:
            raise self.errors[i]


def run_in_lockstep(
    runs: Sequence[Callable[[nn.Callback], T]],
    on_epoch: Callable[[int, list[list[nn.EpochLog]]], None],
) -> list[T]:
    """Run each ``runs[i](callback)`` (an ``nn.fit`` taking ``callback`` among its callbacks) epoch by epoch.

    After every fold still training has finished epoch e, ``on_epoch(e, logs)`` runs in this
    thread with each fold's logs so far (a fold stopped early by patience has fewer). If it
    raises (a pruned trial, Ctrl-C) or a fold raises, every fold stops at its next epoch's end and
    the exception propagates here. Returns each run's result, in order.
    """
    state = _Lockstep(runs)
    threads = [threading.Thread(target=state.fold, args=(i,), daemon=True) for i in range(len(runs))]
    for t in threads:
        t.start()
    try:
        epoch = 0
        while True:
            epoch += 1
            for i in range(len(runs)):
                if not state.done[i]:
                    state.give_turn(i)
            if all(state.done):
                break
            on_epoch(epoch, state.logs)
    finally:
        with state.cond:
            state.stop = True
            state.cond.notify_all()
        for t in threads:
            t.join()  # a fold still inside its epoch stops at the epoch's end
    return [r for r in state.results]  # type: ignore[misc]  # every run returned: none raised


def fold_mean_log(epoch: int, logs: list[list[nn.EpochLog]], patience: int) -> nn.EpochLog:
    """Epoch ``epoch`` of the fold-mean curve: the mean over folds of each fold's costs and error.

    A fold stopped early by ``patience`` counts with the epoch its restored weights come from
    (its lowest validation cost), the model it ends with. Validation cost and error are each
    fold's held-out fold (``dev_cost``, ``dev_error`` of its fit); seconds are the folds' sum.
    """
    rows = []
    for history in logs:
        if len(history) >= epoch:
            rows.append(history[epoch - 1])
        else:  # stopped early: fit keeps the first epoch of the lowest dev cost
            rows.append(min(history, key=lambda h: h.dev_cost) if patience else history[-1])
    current = [h for h in logs if len(h) >= epoch]
    return nn.EpochLog(
        epoch=epoch,
        train_cost=float(np.mean([r.train_cost for r in rows])),
        dev_cost=float(np.mean([r.dev_cost for r in rows])),
        dev_error=float(np.mean([r.dev_error for r in rows])),
        learning_rate=current[0][epoch - 1].learning_rate if current else rows[0].learning_rate,
        seconds=float(sum(h[epoch - 1].seconds for h in current)),
    )
