"""Cross-validation (tune.cv_folds): the folds, the lockstep runner, and a CV trial's score and pruning."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from pipeline import nn
from pipeline.config import FloatRange, load_params
from pipeline.errors import ConfigError
from pipeline.paths import SPLIT_DIR
from pipeline.study import cv, identity
from pipeline.study.objective import Objective, TrialData, train_trial
from pipeline.study.space import apply_params


def with_tune(params, **tune):
    return dataclasses.replace(params, tune=dataclasses.replace(params.tune, **tune))


# --- the folds ------------------------------------------------------------------------------------


def test_folds_partition_train_stratified_and_depend_on_the_seed_only():
    y = np.repeat([0, 1, 2], [50, 31, 7])
    folds = cv.fold_indices(y, 3, seed=42)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(y)))  # each example in one fold
    assert all(np.array_equal(f, np.sort(f)) for f in folds)
    for label in (0, 1, 2):
        counts = [np.count_nonzero(y[f] == label) for f in folds]
        assert max(counts) - min(counts) <= 1, label  # every class spread evenly
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(folds, cv.fold_indices(y, 3, seed=42), strict=True))
    assert not np.array_equal(folds[0], cv.fold_indices(y, 3, seed=7)[0])
    with pytest.raises(ConfigError, match=r"tune\.cv_folds: 5 folds need at least 5 training examples"):
        cv.fold_indices(np.zeros(4, dtype=int), 5, seed=0)


# --- the lockstep runner --------------------------------------------------------------------------


def fake_fit(i: int, epochs: int, order: list, fail_at: int | None = None):
    """A stand-in for nn.fit: ``epochs`` epochs, each appended to ``order`` before its callback."""

    def run(callback):
        for e in range(1, epochs + 1):
            if e == fail_at:
                raise nn.Diverged(e, float("nan"), 2)
            order.append((i, e))
            callback(nn.EpochLog(e, 1.0, float(10 * i + e), 0.5, 0.1, 0.0))
        return f"result {i}"

    return run


def test_lockstep_trains_every_fold_one_epoch_before_the_caller_sees_it():
    order, seen = [], []
    runs = [fake_fit(i, 3, order) for i in range(3)]
    results = cv.run_in_lockstep(runs, lambda e, logs: seen.append((e, len(order), [len(h) for h in logs])))
    assert results == ["result 0", "result 1", "result 2"]
    assert order == [(i, e) for e in (1, 2, 3) for i in range(3)]  # fold by fold within each epoch
    assert seen == [(1, 3, [1, 1, 1]), (2, 6, [2, 2, 2]), (3, 9, [3, 3, 3])]


def test_lockstep_stops_every_fold_when_the_caller_or_a_fold_raises():
    before = threading.active_count()
    order = []

    def prune(epoch, logs):
        if epoch == 2:
            raise optuna.TrialPruned("pruned")

    with pytest.raises(optuna.TrialPruned):
        cv.run_in_lockstep([fake_fit(i, 5, order) for i in range(3)], prune)
    assert max(e for _, e in order) == 2 and threading.active_count() == before  # stopped, threads joined

    order = []
    runs = [fake_fit(0, 5, order), fake_fit(1, 5, order, fail_at=2), fake_fit(2, 5, order)]
    with pytest.raises(nn.Diverged):
        cv.run_in_lockstep(runs, lambda e, logs: None)
    assert order == [(0, 1), (1, 1), (2, 1), (0, 2)] and threading.active_count() == before


def test_the_fold_mean_keeps_an_early_stopped_fold_at_its_restored_epoch():
    def log(e, cost, error):
        return nn.EpochLog(e, 2.0, cost, error, 0.1, 1.0)

    early = [log(1, 0.5, 0.2), log(2, 0.7, 0.3)]  # stopped after epoch 2, restored epoch 1
    full = [log(1, 0.9, 0.4), log(2, 0.8, 0.3), log(3, 0.6, 0.1)]
    mean = cv.fold_mean_log(3, [early, full], patience=1)
    assert (mean.epoch, mean.dev_cost, mean.dev_error, mean.seconds) == (
        3,
        pytest.approx(0.55),
        pytest.approx(0.15),
        1.0,
    )
    assert cv.fold_mean_log(2, [early, full], patience=1).dev_cost == pytest.approx(0.75)


# --- a cross-validated trial ----------------------------------------------------------------------


def test_a_cv_trial_scores_the_mean_of_its_folds_trained_independently(workspace):
    params = with_tune(load_params("params.yaml"), cv_folds=3)
    data = TrialData.read()
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(params, data), n_trials=2)
    holdout = with_tune(params, cv_folds=0)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        config, seed_trial = apply_params(holdout, t.user_attrs["values"]), t.user_attrs["seed_trial"]
        errors, curves = [], []
        for validation in cv.fold_indices(data.y_train, 3, params.seed):  # the same training code, fold by fold
            curve: list[float] = []
            fold = train_trial(
                config, data.fold(validation), seed_trial, [lambda log, curve=curve: curve.append(log.dev_cost)]
            )
            errors.append(fold["dev_error"])
            curves.append(curve)
        assert t.value == np.mean(errors) == t.user_attrs["cv_error"]
        assert t.user_attrs["cv_fold_errors"] == errors
        assert t.user_attrs["cv_error_std"] == pytest.approx(np.std(errors, ddof=1))
        # The pruner saw the fold-mean curve: every epoch, the mean of the three folds' validation costs.
        assert list(t.intermediate_values.values()) == [float(np.mean(c)) for c in zip(*curves, strict=True)]
        # The dev numbers come from the network trained on all of train: what the train stage ships.
        full = train_trial(config, data, seed_trial)
        assert (t.user_attrs["dev_error"], t.user_attrs["train_error"]) == (full["dev_error"], full["train_error"])
        assert t.user_attrs["dev_cost"] == full["dev_cost"]


class PruneAt(optuna.pruners.BasePruner):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.epoch


def test_pruning_a_cv_trial_stops_all_its_folds_and_skips_the_full_model(workspace, monkeypatch):
    fits, real_fit = [], nn.fit

    def spy(X, *args, callbacks=(), **kwargs):
        epochs: list[int] = []
        fits.append((X.shape[1], epochs))
        return real_fit(X, *args, callbacks=[lambda log: epochs.append(log.epoch), *callbacks], **kwargs)

    monkeypatch.setattr(nn, "fit", spy)
    before = threading.active_count()
    study = optuna.create_study(pruner=PruneAt(2))
    study.optimize(Objective(with_tune(load_params("params.yaml"), cv_folds=3), TrialData.read()), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["epochs_trained"] == 2
    assert t.user_attrs["cause"].startswith("pruned at epoch 2: cv cost")
    assert [m for m, _ in fits] == [200, 200, 200]  # three folds of 2/3 of the 300 examples, no full model
    assert all(epochs == [1, 2] for _, epochs in fits) and threading.active_count() == before


def test_a_diverging_fold_names_its_fold_and_layer(workspace):
    params = with_tune(load_params("params.yaml"), cv_folds=2)
    space = dataclasses.replace(params.tune.space, learning_rate=FloatRange(1e200, 1e300))
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, optimizer="gd"))
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(with_tune(params, space=space), TrialData.read()), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED
    layer = t.user_attrs["diverged_layer"]
    assert t.user_attrs["cause"].startswith("diverged at epoch 1 in cv fold 1 (cost ")
    assert t.user_attrs["cause"].endswith(f", layer {layer} exploded): lower the learning rate")


def test_ctrl_c_in_a_cv_trial_marks_it_interrupted_and_stops_the_folds(workspace):
    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    before = threading.active_count()
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    objective = Objective(with_tune(load_params("params.yaml"), cv_folds=3), TrialData.read(), checkpoint=checkpoint)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs["cause"] == "interrupted"
    assert threading.active_count() == before


def test_cv_folds_is_the_scoring_part_of_the_fingerprint_and_never_mixed(workspace):
    params = load_params("params.yaml")
    base, folded = (
        identity.fingerprint(params, SPLIT_DIR),
        identity.fingerprint(with_tune(params, cv_folds=5), SPLIT_DIR),
    )
    assert identity.changed(base.parts, folded.parts) == ["scoring"] and "scoring" in identity.STRICT_PARTS
    assert identity.setting_changes(base.settings, folded.settings) == ["tune.cv_folds: 0 -> 5"]
