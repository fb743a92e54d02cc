"""Read what the upstream stages wrote. A missing file becomes a reason shown in the report; a
malformed one is a DataError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError
from pipeline.io import load_npy, read_json
from pipeline.paths import (
    BEST_PARAMS,
    DEV_PREDICTIONS,
    METRICS,
    MODEL_META,
    NORMALIZER,
    SPLIT_REPORT,
    SPLITS,
    TRAIN_HEALTH,
    TRAIN_HISTORY,
    TRAIN_METRICS,
    TRIALS_CSV,
    split_file,
)
from pipeline.report.health import LayerRow, parse_rows
from pipeline.report.selection import DevPredictions
from pipeline.report.trials import TrialRow, read_trials

# Each finished trial's predicted class per dev example, written by the tune stage.

PATHS = {
    "meta": NORMALIZER,  # classes, image_shape, source
    "split": SPLIT_REPORT,  # sizes and class balance: the report never opens the test split
    "metrics": METRICS,
    "history": TRAIN_HISTORY,
    "best": BEST_PARAMS,
    "trials": TRIALS_CSV,
    "model": MODEL_META,  # architecture and the settings it was trained with
    "train": TRAIN_METRICS,  # epochs, best_epoch, seconds of the final fit
    "health": TRAIN_HEALTH,  # per epoch and layer: the final model's gradient health
    "predictions": DEV_PREDICTIONS,  # per trial and dev example: the predicted class
}


@dataclass
class ReportInputs:
    root: Path
    meta: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    best: dict[str, Any] | None = None
    trials: list[TrialRow] | None = None
    model: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    health: list[LayerRow] | None = None
    predictions: DevPredictions | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # examples per split, from reports/split.json
    n_x: int | None = None
    balance: dict[str, dict[int, int]] = field(default_factory=dict)  # split -> class -> count
    missing: dict[str, str] = field(default_factory=dict)  # input name -> why it is absent

    def why_missing(self, *names: str) -> str:
        return "; ".join(self.missing[n] for n in names if n in self.missing)

    @property
    def source(self) -> str | None:
        """The data source the split was made from (``digits``, ``folder``, ...), from normalizer.json."""
        return (self.meta or {}).get("source")

    @property
    def target(self) -> dict[str, Any] | None:
        """The target distribution (``data.target``) as split.json describes it, or None without one."""
        target = (self.split or {}).get("target")
        return target if isinstance(target, Mapping) and target else None

    @property
    def total(self) -> int:
        """Examples over all splits (reports/split.json sizes): what any new split can share out."""
        return sum(self.sizes.values())


def load_inputs(root: Path) -> ReportInputs:
    """Read every input under ``root``; absent ones are recorded in ``missing``."""
    inputs = ReportInputs(root=root)
    for name, rel in PATHS.items():
        path = root / rel
        if not path.exists():
            inputs.missing[name] = f"{rel.as_posix()} not found (run the stage that writes it: dvc repro)"
            continue
        if name == "trials":
            value: Any = read_trials(path)
        elif name == "predictions":
            value = _predictions(path)
        else:
            value = read_json(path)
        if name == "history":
            value = _history(value, path)
        if name == "health":
            value = _health(value, path)
        setattr(inputs, name, value)
    # Sizes and class balance come from the split stage's report: evaluate stays the only stage
    # that opens the test split.
    split_report = inputs.split or {}
    counts = split_report.get("class_counts") or {}
    for split, n in (split_report.get("sizes") or {}).items():
        if split in SPLITS and isinstance(n, int) and n > 0:  # train_dev is empty when split.train_dev is 0
            inputs.sizes[split] = n
            per_class = counts.get(split) or {}
            inputs.balance[split] = {i: int(k) for i, k in enumerate(per_class.values()) if k}
    X_train = root / split_file("X", "train")
    if X_train.exists():
        inputs.n_x = int(load_npy(X_train).shape[1])
    if "train" not in inputs.sizes:
        inputs.missing["data"] = f"{SPLIT_REPORT.as_posix()} has no train split (run dvc repro split)"
    _check_predictions(inputs)
    return inputs


def _predictions(path: Path) -> DevPredictions:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = DevPredictions(z["trial_numbers"], z["predictions"], z["y_dev"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(
            f"{path}: not a dev-predictions archive ({type(e).__name__}: {e}); rerun the tune stage"
        ) from None
    k, n = len(data.trial_numbers), len(data.y_dev)
    if data.predictions.shape != (k, n):
        raise DataError(
            f"{path}: predictions have shape {data.predictions.shape}, expected ({k}, {n}) (trials, dev examples); "
            "rerun the tune stage"
        )
    return data


def _check_predictions(inputs: ReportInputs) -> None:
    """Predictions made for another dev split (an older one) are set aside with a reason, not used."""
    data, y_file = inputs.predictions, inputs.root / split_file("y", "dev")
    if data is None or not y_file.exists():
        return
    y_dev = load_npy(y_file)
    if len(y_dev) != len(data.y_dev) or not np.array_equal(np.asarray(y_dev), data.y_dev):
        inputs.predictions = None
        inputs.missing["predictions"] = (
            f"{DEV_PREDICTIONS.as_posix()} was written for another dev split than data/split's (rerun the tune stage)"
        )
    elif len(data.trial_numbers) == 0:
        inputs.predictions = None
        inputs.missing["predictions"] = f"{DEV_PREDICTIONS.as_posix()} holds no finished trial"


def _health(value: Any, path: Path) -> list[LayerRow]:
    if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
        raise DataError(f"{path}: expected a list of rows with 'epoch', 'layer', 'w_norm', 'grad_norm', 'update_ratio'")
    try:
        return parse_rows(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: {e}; rerun the train stage") from None


def _history(value: Any, path: Path) -> list[dict[str, Any]]:
    """Accept a list of epoch records, or a DVC-plots style ``{"<name>": [records]}``."""
    if isinstance(value, Mapping):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if lists else None
    if not isinstance(value, list) or not all(isinstance(r, Mapping) and "epoch" in r for r in value):
        raise DataError(f"{path}: expected a list of epoch records with 'epoch', 'train_cost', 'dev_cost', 'dev_error'")
    return list(value)


def split_errors(inputs: ReportInputs) -> tuple[dict[str, tuple[float, int]], dict[str, str]]:
    """``split -> (error rate, n)`` from reports/metrics.json, and a reason for each split not found.

    Accepted shapes: ``{"train": {"error": 0.01, "n": 1761}, ...}`` (also ``error_rate``, ``m``) or
    flat ``{"train_error": 0.01, "n_train": 1761}``; a missing ``n`` is taken from data/split.
    """
    found: dict[str, tuple[float, int]] = {}
    reasons: dict[str, str] = {}
    m = inputs.metrics or {}
    for split in SPLITS:
        entry = m.get(split)
        entry = entry if isinstance(entry, Mapping) else {}
        rate = _first(entry, "error", "error_rate")
        rate = rate if rate is not None else _first(m, f"{split}_error", f"{split}_error_rate")
        n = _first(entry, "n", "m", "size", "examples")
        n = n if n is not None else _first(m, f"n_{split}", f"{split}_n", f"m_{split}")
        n = n if n is not None else inputs.sizes.get(split)
        if rate is None:
            if split != "train_dev" or inputs.sizes.get("train_dev"):
                reasons[split] = inputs.why_missing("metrics") or f"{METRICS.as_posix()} has no {split} error"
            else:
                reasons[split] = "no train-dev split (split.train_dev is 0)"
            continue
        if n is None or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise DataError(f"{METRICS.as_posix()}: {split} error {rate!r} on n={n!r} is not an error rate with a size")
        found[split] = (float(rate), int(n))
    return found, reasons


def confusion(inputs: ReportInputs) -> tuple[list[list[int]] | None, list[str]]:
    """The test confusion matrix from reports/metrics.json (top level or under ``test``) and its labels."""
    m = inputs.metrics or {}
    test = m.get("test") if isinstance(m.get("test"), Mapping) else {}
    cm = m.get("confusion_matrix", test.get("confusion_matrix"))
    if isinstance(cm, Mapping):  # {"labels": [...], "matrix": [[...]]}
        labels, cm = cm.get("labels"), cm.get("matrix")
    else:
        labels = m.get("labels", test.get("labels"))
    if cm is None:
        return None, []
    labels = [str(x) for x in (labels or (inputs.meta or {}).get("classes") or range(len(cm)))]
    if len(labels) != len(cm):
        labels = [str(i) for i in range(len(cm))]
    return [[int(v) for v in row] for row in cm], labels


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None
