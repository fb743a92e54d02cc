"""Error analysis on dev (course 3): which classes the final model gets wrong, which examples, and
whether its probabilities can be believed.

The report stage loads ``models/final`` and predicts the dev split (``dev_analysis``); from the
predictions come

- per class: the dev examples, the errors, recall (the share of the class found) and precision
  (the share of the class's predictions that are right);
- a gallery of the misclassified dev examples, the most confident mistakes first (at most
  ``GALLERY``), each with its true and predicted label and the predicted probability; for an image
  source the images themselves, each min-max scaled for display;
- a reliability diagram: the dev examples in ``BINS`` equal-width bins of the predicted class's
  probability, each bin's accuracy against its mean probability, and the expected calibration
  error ECE = sum over bins of (bin size / n) x |accuracy - mean probability|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.models import load_model
from pipeline.data.store import load_split
from pipeline.nn.network import predict_proba
from pipeline.paths import MODEL_STEM
from pipeline.report.inputs import ReportInputs

GALLERY = 16
BINS = 10


@dataclass(frozen=True)
class ClassStats:
    label: str
    n: int
    errors: int
    recall: float | None  # None when the class has no dev example
    precision: float | None  # None when the model never predicts it


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    n: int
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class Mistake:
    index: int  # row of data/split/X_dev.npy
    true: str
    predicted: str
    probability: float  # of the predicted class


@dataclass(frozen=True)
class DevAnalysis:
    n: int
    per_class: list[ClassStats]
    bins: list[Bin]
    ece: float
    mistakes: list[Mistake]  # the gallery, most confident first
    overconfidence: float = 0.0  # mean predicted probability - accuracy: > 0 overconfident, < 0 underconfident
    images: list[np.ndarray] = field(default_factory=list)  # one per mistake, scaled to [0, 1]; [] when not images

    def to_dict(self) -> dict[str, object]:
        return {
            "n_dev": self.n,
            "ece": self.ece,
            "overconfidence": self.overconfidence,
            "per_class": [vars(c) for c in self.per_class],
            "reliability": [vars(b) for b in self.bins],
            "misclassified": [vars(m) for m in self.mistakes],
        }


def per_class(y: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> list[ClassStats]:
    out = []
    for i, label in enumerate(labels):
        actual, guessed = y == i, predicted == i
        hits = int(np.count_nonzero(actual & guessed))
        n, n_guessed = int(np.count_nonzero(actual)), int(np.count_nonzero(guessed))
        out.append(ClassStats(label, n, n - hits, hits / n if n else None, hits / n_guessed if n_guessed else None))
    return out


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> tuple[list[Bin], float]:
    """Equal-width bins of the predicted probability, and the expected calibration error."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out, ece, n = [], 0.0, len(confidence)
    for b in range(bins):
        inside = which == b
        k = int(np.count_nonzero(inside))
        if not k:
            out.append(Bin(b / bins, (b + 1) / bins, 0, None, None))
            continue
        acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += k / n * abs(acc - conf)
        out.append(Bin(b / bins, (b + 1) / bins, k, acc, conf))
    return out, ece


def scaled(row: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """One example as an image of ``shape``, min-max scaled to [0, 1] (a constant image is all 0)."""
    image = np.asarray(row, dtype=np.float64).reshape(tuple(shape))
    span = image.max() - image.min()
    return (image - image.min()) / span if span > 0 else np.zeros_like(image)


def analyse(
    X_rows: np.ndarray,
    y: np.ndarray,
    proba: np.ndarray,
    labels: Sequence[str],
    image_shape: Sequence[int] | None = None,
) -> DevAnalysis:
    """From the dev rows ``(m, n_x)``, labels and the model's output probabilities ``(n_out, m)``."""
    if proba.shape[0] == 1:  # a sigmoid output: P(y = 1)
        p1 = proba[0]
        predicted, confidence = (p1 > 0.5).astype(np.int64), np.maximum(p1, 1.0 - p1)
    else:
        predicted, confidence = np.argmax(proba, axis=0), np.max(proba, axis=0)
    correct = predicted == y
    bins, ece = reliability(confidence, correct)
    wrong = np.flatnonzero(~correct)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:GALLERY]
    name = dict(enumerate(labels))
    mistakes = [
        Mistake(int(i), name.get(int(y[i]), str(y[i])), name.get(int(p), str(p)), float(confidence[i]))
        for i, p in zip(wrong, predicted[wrong], strict=True)
    ]
    is_image = image_shape is not None and int(np.prod(image_shape)) == X_rows.shape[1]
    images = [scaled(X_rows[i], image_shape) for i in wrong] if is_image else []
    over = float(confidence.mean() - correct.mean()) if len(y) else 0.0
    return DevAnalysis(len(y), per_class(y, predicted, labels), bins, ece, mistakes, over, images)


def dev_analysis(inputs: ReportInputs) -> tuple[DevAnalysis | None, str]:
    """Load the final model and analyse its dev predictions; None and the reason when it cannot."""
    if "dev" not in inputs.sizes:
        return None, inputs.why_missing("data") or "no dev split"
    weights_file = inputs.root / MODEL_STEM.with_suffix(".npz")
    if not weights_file.exists():
        return None, f"{MODEL_STEM.with_suffix('.npz').as_posix()} not found (run the train stage: dvc repro)"
    weights, arch, extra = load_model(inputs.root / MODEL_STEM)
    X, y = load_split("dev", inputs.root)
    X = np.asarray(X)
    labels = [str(c) for c in extra.get("classes") or (inputs.meta or {}).get("classes") or range(arch.n_classes)]
    proba = predict_proba(X.T, weights, arch)
    shape = (inputs.meta or {}).get("image_shape")
    return analyse(X, np.asarray(y), proba, labels, shape), ""
