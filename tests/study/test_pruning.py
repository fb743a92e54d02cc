"""pipeline.study.pruning: Optuna's median rule, with the finished trials read once per refresh."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from pipeline.config import load_params
from pipeline.study import pruning
from pipeline.study.config import PRUNERS
from tests.study.conftest import REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def completed(study: optuna.Study, curve: np.ndarray) -> None:
    """A COMPLETE trial that reported ``curve`` (one dev cost per step from 0)."""
    trial = study.ask()
    for step, value in enumerate(curve):
        trial.report(float(value), step)
    study.tell(trial, float(curve[-1]))


def test_every_decision_is_optunas_when_nothing_completes_in_between() -> None:
    """One worker: across trials that are pruned and trials that are not, ours and Optuna's agree step by step."""
    rng = np.random.default_rng(0)
    ours = pruning.MedianPruner(n_startup_trials=3, n_warmup_steps=4, clock=Clock())
    theirs = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4)
    study = optuna.create_study()
    decisions = []
    for _ in range(12):
        trial = study.ask()
        curve = np.cumsum(rng.normal(-0.05, 0.1, 20)) + rng.uniform(0.5, 1.5)
        for step, value in enumerate(curve):
            trial.report(float(value), step)
            frozen = study._storage.get_trial(trial._trial_id)
            mine, optunas = ours.prune(study, frozen), theirs.prune(study, frozen)
            assert mine == optunas, f"trial {trial.number} step {step}"
            decisions.append(mine)
            if mine:
                break
        if mine:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, float(curve[-1]))
    assert any(decisions) and not all(decisions)  # both kinds of decision were compared


def test_reads_the_finished_trials_once_per_refresh() -> None:
    clock = Clock()
    study = optuna.create_study()
    for _ in range(3):
        completed(study, np.linspace(1.0, 0.5, 30))
    reads = []
    real = study.get_trials

    def counting(*args, **kwargs):
        reads.append(kwargs.get("states"))
        return real(*args, **kwargs)

    study.get_trials = counting  # type: ignore[method-assign]
    pruner = pruning.MedianPruner(n_startup_trials=1, n_warmup_steps=1, refresh_seconds=1.0, clock=clock)
    trial = study.ask()
    for step in range(30):
        trial.report(1.0, step)  # above the median after the warm-up: pruned at every check
        assert pruner.prune(study, study._storage.get_trial(trial._trial_id)) == (step >= 1)
        clock.now += 0.01  # 30 epochs of 10 ms: 0.3 s
    assert len(reads) == 1
    clock.now += 1.0
    pruner.prune(study, study._storage.get_trial(trial._trial_id))
    assert len(reads) == 2  # a second later: read again
    other = study.ask()  # the next trial reads its own copy at its first check
    other.report(1.0, 0)
    pruner.prune(study, study._storage.get_trial(other._trial_id))
    assert len(reads) == 3


def test_a_trial_another_worker_completes_counts_after_the_refresh() -> None:
    clock = Clock()
    study = optuna.create_study()
    for _ in range(2):
        completed(study, np.full(10, 2.0))  # worse than the running trial: it is kept
    pruner = pruning.MedianPruner(n_startup_trials=1, n_warmup_steps=0, refresh_seconds=1.0, clock=clock)
    trial = study.ask()
    trial.report(1.5, 0)
    assert not pruner.prune(study, study._storage.get_trial(trial._trial_id))
    for _ in range(3):
        completed(study, np.full(10, 0.5))  # three better trials finish elsewhere: the median falls to 0.5
    trial.report(1.5, 1)
    frozen = study._storage.get_trial(trial._trial_id)
    assert optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0).prune(study, frozen)
    assert not pruner.prune(study, frozen)  # not yet seen: the copy is 0 s old
    clock.now += 1.0
    assert pruner.prune(study, frozen)  # seen, and Optuna's decision


def test_the_median_pruner_of_params_is_this_one() -> None:
    params = load_params(REPO / "params.yaml")
    pruner = PRUNERS["median"](params)
    assert isinstance(pruner, pruning.MedianPruner)
    assert pruner._n_startup_trials == params.tune.startup_trials
    assert pruner._n_warmup_steps == max(1, params.train.epochs // 10)


@pytest.mark.parametrize("question", [{"deepcopy": True}, {"deepcopy": False, "states": None}])
def test_other_questions_go_to_the_study(question: dict) -> None:
    study = optuna.create_study()
    completed(study, np.ones(3))
    study.ask()  # a RUNNING trial, not in the copy
    view = pruning._Completed(study, [])
    assert len(view.get_trials(**question)) == 2
