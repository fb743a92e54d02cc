"""Stratified splitting, duplicate detection and the train-only normalizer."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import SplitParams
from pipeline.data.normalize import Normalizer
from pipeline.data.split import SPLITS, find_duplicates, stratified_split
from pipeline.errors import DataError


def labels(counts: list[int]) -> np.ndarray:
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return np.random.default_rng(1).permutation(y)


def test_split_sizes_partition_and_stratification() -> None:
    y = labels([300, 200, 100])
    rows = stratified_split(y, SplitParams(0.8, 0.1, 0.1, train_dev=0.05), seed=3)
    sizes = {k: len(v) for k, v in rows.items()}
    assert sizes == {"train": 456, "dev": 60, "test": 60, "train_dev": 24}  # 600*0.1, 480*0.05
    everything = np.concatenate([rows[k] for k in SPLITS])
    assert np.array_equal(np.sort(everything), np.arange(600))  # disjoint and complete
    for name in SPLITS:  # class shares within one row of the overall 3:2:1
        counts = np.bincount(y[rows[name]], minlength=3)
        expected = len(rows[name]) * np.array([3, 2, 1]) / 6
        assert np.all(np.abs(counts - expected) <= 1), (name, counts)


def test_split_is_seeded() -> None:
    y = labels([50, 50])
    a = stratified_split(y, SplitParams(0.8, 0.1, 0.1), seed=0)
    b = stratified_split(y, SplitParams(0.8, 0.1, 0.1), seed=0)
    c = stratified_split(y, SplitParams(0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in SPLITS)
    assert not np.array_equal(a["test"], c["test"])


def test_default_98_1_1_on_digits_sized_data() -> None:
    rows = stratified_split(labels([180] * 9 + [177]), SplitParams(), seed=42)
    assert (len(rows["train"]), len(rows["dev"]), len(rows["test"]), len(rows["train_dev"])) == (1761, 18, 18, 0)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        (SplitParams(0.98, 0.01, 0.01), "split.test leaves 0 of 40 examples"),
        (SplitParams(0.5, 0.01, 0.49), "split.dev leaves 0 of 40 examples"),
        (SplitParams(0.8, 0.1, 0.1, train_dev=0.01), "split.train_dev leaves 0 examples"),
    ],
)
def test_a_split_left_empty_is_refused(fractions: SplitParams, message: str) -> None:
    with pytest.raises(DataError, match=message):
        stratified_split(labels([20, 20]), fractions, seed=0)


def test_a_class_with_no_training_rows_is_refused() -> None:
    y = np.array([0] * 50 + [1])  # the lone example of class 1 must not all go to dev/test
    rows = stratified_split(y, SplitParams(0.6, 0.2, 0.2), seed=0)
    assert 1 in y[rows["train"]]
    with pytest.raises(DataError, match="class 0 has too few examples"):
        stratified_split(np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]), SplitParams(0.2, 0.4, 0.4), seed=0)


def test_duplicates_across_splits_are_found() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((40, 5)).astype(np.float32)
    rows = {"train": np.arange(0, 30), "dev": np.arange(30, 35), "test": np.arange(35, 40), "train_dev": np.arange(0)}
    assert find_duplicates(X, rows)["count"] == 0
    X[36] = X[3]  # a test image that is also in train
    X[31] = X[33]  # two copies inside dev: not a leak
    X[5] = X[6]  # two copies inside train: not a leak
    found = find_duplicates(X, rows)
    assert found["count"] == 1 and found["rows"] == 2
    assert found["by_pair"] == {"train/test": 1}
    assert found["examples"] == [{"rows": [3, 36], "splits": ["train", "test"]}]
    assert found["redundant_rows"] == 3


# --- normalizer ----------------------------------------------------------------------------------


def test_scale_divides_by_the_pixel_range() -> None:
    X = np.array([[0, 8, 16]], dtype=np.float32)
    n = Normalizer.fit(X, "scale", 16.0)
    np.testing.assert_allclose(n.transform(X), [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(Normalizer.fit(X, "none", 16.0).transform(X), X)


def test_standardize_uses_train_statistics_and_survives_constant_features() -> None:
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.integers(0, 256, 500), np.zeros(500)]).astype(np.float32)
    n = Normalizer.fit(train, "standardize", 255.0)
    Z = n.transform(train)
    np.testing.assert_allclose(Z[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[:, 0].std(), 1.0, atol=1e-5)
    np.testing.assert_array_equal(Z[:, 1], 0.0)  # constant column: std set to 1, not a division by 0
    np.testing.assert_allclose(n.mean[0], (train[:, 0] / 255.0).mean())
    other = np.array([[255.0, 255.0]], dtype=np.float32)
    expected = (other / 255.0 - n.mean) / n.std
    np.testing.assert_allclose(n.transform(other), expected, rtol=1e-6)
    assert Z.dtype == np.float32


def test_standardize_fits_on_the_given_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(0).random((300, 4)).astype(np.float32)
    rows = np.arange(0, 300, 3)
    monkeypatch.setattr("pipeline.data.normalize.chunk_rows", lambda n_x: 7)  # many small chunks
    n = Normalizer.fit(X, "standardize", 1.0, rows=rows)
    np.testing.assert_allclose(n.mean, X[rows].astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(n.std, X[rows].astype(np.float64).std(axis=0), rtol=1e-10)


def test_normalizer_round_trips_through_json_dict() -> None:
    n = Normalizer.fit(np.random.default_rng(0).random((20, 3)), "standardize", 1.0)
    back = Normalizer.from_dict(n.to_dict())
    X = np.random.default_rng(1).random((4, 3))
    np.testing.assert_array_equal(back.transform(X), n.transform(X))
    with pytest.raises(DataError, match="lacks its statistics"):
        Normalizer.from_dict({"mode": "standardize", "pixel_range": 1.0})
