"""Stage ``evaluate``: score the final network once on every split. The ONLY stage that reads test.

Writes ``reports/metrics.json`` (error, accuracy and size per split, and the confusion matrix on
test), ``reports/per_class.json`` (precision, recall and support per class on test) and
``reports/confusion.json`` (one {actual, predicted} row per test example, for DVC's confusion
template). Only metrics.json is a DVC metric: ``dvc exp show`` makes a column of every number in
it, and per-class detail (30 columns for the digits) would bury the errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import nn
from pipeline.data.models import load_model
from pipeline.data.store import load_normalizer, load_split
from pipeline.errors import DataError
from pipeline.io import atomic_write_json
from pipeline.paths import CONFUSION, METRICS, MODEL_STEM, PER_CLASS, SPLITS

# Per-class detail: a report file, not a DVC metric (see the module docstring).


def configure(parser: argparse.ArgumentParser) -> None:
    """No options: the model and the splits say everything (params are not read)."""


def run(args: argparse.Namespace) -> int:
    m = evaluate()
    print(
        f"evaluate: train_error={m['train_error']:.4f} dev_error={m['dev_error']:.4f} "
        f"test_error={m['test_error']:.4f} -> {METRICS}, {PER_CLASS}"
    )
    return 0


def evaluate(root: str | Path = ".") -> dict[str, Any]:
    """Compute and write the metrics; return them."""
    root = Path(root)
    weights, arch, extra = load_model(root / MODEL_STEM)
    normalizer, norm_doc = load_normalizer(root)
    if extra.get("normalizer") != normalizer.to_dict():
        raise DataError(f"{MODEL_STEM}.json: trained on differently normalized data than the split; rerun train")
    classes = list(extra.get("classes") or norm_doc["classes"])
    metrics: dict[str, Any] = {}
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in SPLITS:
        X, y = load_split(name, root)
        if len(y) == 0:  # train_dev is empty unless split.train_dev > 0
            continue
        if X.shape[1] != arch.layer_dims[0]:
            raise DataError(f"{MODEL_STEM}.npz expects {arch.layer_dims[0]} features, {name} has {X.shape[1]}")
        pred = nn.predict(X.T, weights, arch)
        error = float(np.mean(pred != y))
        metrics |= {f"{name}_error": error, f"{name}_accuracy": 1.0 - error, f"n_{name}": len(y)}
        predictions[name] = (y, pred)
    y_test, pred_test = predictions["test"]
    cm = confusion_matrix(y_test, pred_test, len(classes))
    # A list: dvc exp show makes no columns of it. The report reads it from here.
    metrics["confusion_matrix"] = {"labels": classes, "matrix": cm.tolist()}  # rows actual, columns predicted
    confusion = [{"actual": classes[a], "predicted": classes[p]} for a, p in zip(y_test, pred_test, strict=True)]
    atomic_write_json(root / CONFUSION, confusion)
    atomic_write_json(root / PER_CLASS, per_class(cm, classes))
    atomic_write_json(root / METRICS, metrics)
    return metrics


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with actual classes as rows and predicted classes as columns."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y), np.asarray(pred)), 1)
    return cm


def per_class(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision and recall per class; 0.0 where undefined (never predicted / no examples), as scikit-learn does."""
    tp, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    out = {}
    for k, name in enumerate(classes):
        precision = tp[k] / predicted[k] if predicted[k] else 0.0
        recall = tp[k] / support[k] if support[k] else 0.0
        out[name] = {"precision": float(precision), "recall": float(recall), "support": int(support[k])}
    return out
