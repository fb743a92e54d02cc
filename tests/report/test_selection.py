"""Ties between trials (McNemar's exact test on paired predictions) and the selection-corrected score
(the bootstrap bias-corrected estimate), from the trials' dev predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.report.inputs import DEV_PREDICTIONS, load_inputs
from pipeline.report.selection import DevPredictions, select


def binomtest(*args, **kwargs):
    """scipy's, imported on first use: scipy.stats takes about a second, paid only where these tests run."""
    from scipy.stats import binomtest as scipy_binomtest

    return scipy_binomtest(*args, **kwargs)


def predictions(rng: np.random.Generator, y: np.ndarray, accuracies: list[float]) -> np.ndarray:
    """One row per trial: right with its accuracy, else a random wrong class (10 classes)."""
    right = rng.random((len(accuracies), len(y))) < np.array(accuracies)[:, None]
    wrong = (y + rng.integers(1, 10, size=right.shape)) % 10
    return np.where(right, y, wrong)


def test_ties_are_mcnemar_against_the_best() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    p = predictions(rng, y, [0.95, 0.94, 0.7])  # two close trials and one far worse
    s = select(DevPredictions(np.array([5, 6, 7]), p, y), 0.95, seed=1)
    wrong = p != y
    best = int(np.argmin(wrong.mean(axis=1)))
    assert s.best_trial == 5 + best and s.naive_best == pytest.approx(wrong[best].mean())
    for row in {0, 1, 2} - {best}:
        only_other = int(np.sum(wrong[row] & ~wrong[best]))
        only_best = int(np.sum(~wrong[row] & wrong[best]))
        assert s.p_values[5 + row] == pytest.approx(binomtest(only_other, only_other + only_best).pvalue)
    assert s.tied_trials == [5 + (1 - best)] and s.p_values[7] < 1e-6


def test_on_random_labels_the_corrected_score_is_at_chance() -> None:
    """50 trials of pure guessing on 60 dev examples: the best looks good by luck, the corrected score does not."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 10, 60)
    guesses = rng.integers(0, 10, (50, 60))
    s = select(DevPredictions(np.arange(50), guesses, y), 0.95, seed=42)
    chance = 0.9
    assert s.naive_best < chance - 0.05  # the minimum of 50 noisy scores
    low, high = s.interval
    assert low <= chance <= high and abs(s.corrected - chance) < 0.05
    assert len(s.tied_trials) >= 40  # almost every guesser ties with the "best"


def test_a_real_winner_is_not_corrected_away() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, 500)
    p = predictions(rng, y, [0.97, 0.6, 0.5, 0.4])
    s = select(DevPredictions(np.arange(4), p, y), 0.95, seed=0)
    assert s.tied_trials == [] and s.interval[0] <= s.corrected <= s.interval[1]
    assert abs(s.corrected - s.naive_best) < 0.01  # nothing to correct: the winner wins on every resample
    again = select(DevPredictions(np.arange(4), p, y), 0.95, seed=0)
    assert again == s  # seeded: the same numbers every run


def write_predictions(root: Path, y: np.ndarray, p: np.ndarray, numbers: np.ndarray) -> None:
    (root / DEV_PREDICTIONS).parent.mkdir(parents=True, exist_ok=True)
    np.savez(root / DEV_PREDICTIONS, trial_numbers=numbers, predictions=p.astype(np.int16), y_dev=y)


def test_the_predictions_file_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "data/split").mkdir(parents=True)
    y = np.arange(10, dtype=np.int64) % 3
    np.save(tmp_path / "data/split/y_dev.npy", y)
    write_predictions(tmp_path, y, np.zeros((2, 10)), np.array([0, 1], dtype=np.int64))
    data = load_inputs(tmp_path).predictions
    assert data is not None and data.predictions.shape == (2, 10) and list(data.trial_numbers) == [0, 1]
    np.save(tmp_path / "data/split/y_dev.npy", y[::-1])  # another dev split since: set aside with the reason
    inputs = load_inputs(tmp_path)
    assert inputs.predictions is None and "another dev split" in inputs.missing["predictions"]
    write_predictions(tmp_path, y, np.zeros((3, 10)), np.array([0, 1], dtype=np.int64))
    with pytest.raises(DataError, match=r"dev_predictions\.npz: predictions have shape \(3, 10\), expected \(2, 10\)"):
        load_inputs(tmp_path)
    (tmp_path / DEV_PREDICTIONS).write_text(json.dumps({"not": "npz"}))
    with pytest.raises(DataError, match="not a dev-predictions archive"):
        load_inputs(tmp_path)
