"""Per-example dev predictions: the trial attribute, and the tune stage's dev_predictions.npz."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from pipeline import nn
from pipeline.config import FloatRange, load_params
from pipeline.errors import DataError
from pipeline.paths import DEV_PREDICTIONS, TRIALS_CSV
from pipeline.stages.tune import write_outputs
from pipeline.study import predictions
from pipeline.study.objective import Objective, TrialData, train_trial
from pipeline.study.space import apply_params


@pytest.mark.parametrize(("n_classes", "dtype"), [(2, "uint8"), (10, "uint8"), (256, "uint8"), (300, "uint16")])
def test_the_attribute_round_trips_and_names_its_dtype(n_classes, dtype):
    labels = np.random.default_rng(0).integers(0, n_classes, 1000)
    text = predictions.encode(labels, n_classes)
    assert text.startswith(f"{dtype}:") and text.isascii()
    decoded = predictions.decode(text)
    assert decoded.dtype == np.int64 and np.array_equal(decoded, labels)


def test_the_attribute_costs_under_a_byte_per_example():
    # Ten classes in random order (the dev file's): log2(10) = 3.3 bits of information per example.
    rng = np.random.default_rng(0)
    for n_classes, m, bound in ((10, 10_000, 0.7), (2, 10_000, 0.25), (10, 20, 2.5)):
        size = len(predictions.encode(rng.integers(0, n_classes, m), n_classes))
        assert size <= bound * m, (n_classes, m, size / m)


def test_a_corrupt_attribute_is_refused():
    for text in ("int8:AAAA", "uint8:not base64!", "uint8:AAAA"):
        with pytest.raises(ValueError):
            predictions.decode(text)


@pytest.fixture
def mixed_study(workspace):
    """Three finished trials and one diverged one (PRUNED) on the workspace's 60 dev examples."""
    params = load_params("params.yaml")
    data = TrialData.read()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(params, data), n_trials=3)
    space = dataclasses.replace(params.tune.space, learning_rate=FloatRange(1e200, 1e300))
    diverging = dataclasses.replace(
        params,
        train=dataclasses.replace(params.train, optimizer="gd"),
        tune=dataclasses.replace(params.tune, space=space),
    )
    study.optimize(Objective(diverging, data), n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    return study, params, data


def test_the_stage_file_holds_what_each_trials_retrained_network_predicts(mixed_study, tmp_path):
    study, params, data = mixed_study
    write_outputs(study, tmp_path)
    with np.load(tmp_path / DEV_PREDICTIONS.name, allow_pickle=False) as f:
        numbers, predicted, y_dev = f["trial_numbers"], f["predictions"], f["y_dev"]
    assert (numbers.dtype, predicted.dtype, y_dev.dtype) == (np.int64, np.int16, np.int64)
    assert numbers.tolist() == [0, 1, 2] and predicted.shape == (3, len(data.y_dev))  # COMPLETE trials only
    assert np.array_equal(y_dev, data.y_dev)  # in dev-file order
    for number, row in zip(numbers, predicted, strict=True):
        t = study.trials[number]
        again = train_trial(apply_params(params, t.user_attrs["values"]), data, t.user_attrs["seed_trial"])
        assert np.array_equal(row, nn.predict(data.X_dev, again.weights, again.arch))
        assert t.user_attrs["dev_error"] == np.mean(row != y_dev)
        assert len(t.user_attrs[predictions.ATTR]) <= len(y_dev) + 40  # small: 60 examples of 3 classes
    header = next(csv.reader((tmp_path / TRIALS_CSV.name).open()))
    assert predictions.ATTR not in header and "dev_error" in header  # the predictions are not a CSV column


def test_the_file_is_the_same_bytes_for_the_same_study(mixed_study, tmp_path):
    study, _, _ = mixed_study
    write_outputs(study, tmp_path / "a")
    write_outputs(study, tmp_path / "b")
    assert (tmp_path / "a" / DEV_PREDICTIONS.name).read_bytes() == (tmp_path / "b" / DEV_PREDICTIONS.name).read_bytes()


def test_predictions_of_another_dev_split_are_refused_before_anything_is_written(mixed_study, tmp_path):
    study, _, data = mixed_study
    np.save("data/split/y_dev.npy", data.y_dev[:-1])
    with pytest.raises(DataError, match=r"trial 0 predicted 60 dev examples but data/split/y_dev\.npy has 59"):
        write_outputs(study, tmp_path)
    assert not any(tmp_path.iterdir())


def test_trials_without_predictions_are_left_out():
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={}))
    study.add_trial(optuna.trial.create_trial(value=0.4, user_attrs={predictions.ATTR: predictions.encode([1, 0], 2)}))
    numbers, predicted = predictions.gather(study.trials, 2)
    assert numbers.tolist() == [1] and predicted.tolist() == [[1, 0]]
    numbers, predicted = predictions.gather([], 2)
    assert numbers.shape == (0,) and predicted.shape == (0, 2)
