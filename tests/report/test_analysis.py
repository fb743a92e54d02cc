"""Error analysis on dev: per-class error and recall, the gallery of mistakes, the reliability diagram
and the expected calibration error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import nn
from pipeline.data.models import save_model
from pipeline.report.analysis import GALLERY, analyse, dev_analysis, per_class, reliability
from pipeline.report.inputs import ReportInputs


def test_ece_by_hand() -> None:
    confidence = np.array([0.95, 0.95, 0.65, 0.65, 0.65, 0.35])
    correct = np.array([True, False, True, True, False, False])
    bins, ece = reliability(confidence, correct)
    # bin 0.9-1.0: accuracy 1/2 at 0.95; bin 0.6-0.7: 2/3 at 0.65; bin 0.3-0.4: 0 at 0.35
    assert ece == pytest.approx(2 / 6 * 0.45 + 3 / 6 * abs(2 / 3 - 0.65) + 1 / 6 * 0.35)
    assert [b.n for b in bins] == [0, 0, 0, 1, 0, 0, 3, 0, 0, 2]
    assert bins[9].accuracy == 0.5 and bins[9].confidence == pytest.approx(0.95) and bins[0].accuracy is None
    assert reliability(np.array([1.0, 0.1]), np.array([True, False]))[0][9].n == 1  # 1.0 falls in the last bin


def test_per_class_error_recall_and_precision() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 1, 1])
    stats = {c.label: c for c in per_class(y, pred, ["a", "b", "c", "d"])}
    assert (stats["a"].n, stats["a"].errors, stats["a"].recall, stats["a"].precision) == (3, 1, 2 / 3, 1.0)
    assert stats["b"].recall == 1.0 and stats["b"].precision == pytest.approx(2 / 4)
    assert stats["c"].recall == 0.0 and stats["c"].precision is None  # never predicted
    assert stats["d"].n == 0 and stats["d"].recall is None


def test_the_gallery_shows_the_most_confident_mistakes_as_images() -> None:
    rng = np.random.default_rng(0)
    m = 40
    X = rng.normal(size=(m, 12))
    y = rng.integers(0, 3, m)
    proba = rng.dirichlet(np.ones(3), size=m).T  # (3, m)
    a = analyse(X, y, proba, ["cat", "dog", "owl"], image_shape=[3, 4])
    predicted = proba.argmax(axis=0)
    wrong = np.flatnonzero(predicted != y)
    assert len(a.mistakes) == min(GALLERY, len(wrong)) and len(a.images) == len(a.mistakes)
    probs = [m.probability for m in a.mistakes]
    assert probs == sorted(probs, reverse=True) and probs[0] == pytest.approx(proba[:, wrong].max(axis=0).max())
    first = a.mistakes[0]
    assert first.true == ["cat", "dog", "owl"][y[first.index]] and first.predicted != first.true
    assert all(img.shape == (3, 4) and img.min() == 0.0 and img.max() == 1.0 for img in a.images)
    assert sum(c.errors for c in a.per_class) == len(wrong)
    no_images = analyse(X, y, proba, ["cat", "dog", "owl"], image_shape=[5, 5])  # not this data's shape
    assert no_images.images == [] and no_images.mistakes == a.mistakes


def test_a_sigmoid_output_is_read_as_two_classes() -> None:
    p1 = np.array([[0.9, 0.2, 0.6, 0.4]])
    a = analyse(np.zeros((4, 2)), np.array([1, 0, 0, 0]), p1, ["no", "yes"])
    assert [(m.index, m.true, m.predicted) for m in a.mistakes] == [(2, "no", "yes")]
    assert a.mistakes[0].probability == pytest.approx(0.6)
    assert a.overconfidence == pytest.approx(np.mean([0.9, 0.8, 0.6, 0.6]) - 0.75)


def test_the_stage_analysis_loads_the_final_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 4)).astype(np.float64), rng.integers(0, 3, 20)
    (tmp_path / "data/split").mkdir(parents=True)
    np.save(tmp_path / "data/split/X_dev.npy", X)
    np.save(tmp_path / "data/split/y_dev.npy", y)
    arch = nn.Architecture.build(4, 3, (5,))
    weights = nn.initialize(arch, rng)
    inputs = ReportInputs(root=tmp_path, meta={"classes": ["a", "b", "c"], "image_shape": [2, 2]}, sizes={"dev": 20})
    assert dev_analysis(inputs) == (None, "models/final.npz not found (run the train stage: dvc repro)")
    save_model(tmp_path / "models/final", weights, arch, {"classes": ["a", "b", "c"]})
    a, why = dev_analysis(inputs)
    assert why == "" and a.n == 20
    expected = nn.predict(X.T, weights, arch)
    assert sum(c.errors for c in a.per_class) == int(np.sum(expected != y))
