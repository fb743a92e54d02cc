"""Where things are: every path that stages share, relative to the repository root, and the root.

This module is the one place a shared path is spelled. ``dvc.yaml`` names the same paths as deps
and outs; ``tests/test_wiring.py`` checks that every path it declares is one of these (or a
source file), so a renamed output cannot drift out of the pipeline definition.

Stdlib only, so that opening a study does not import mlflow (about 1.5 s).
"""

from __future__ import annotations

import os
from pathlib import Path

# --- data -----------------------------------------------------------------------------------------
RAW_DIR = Path("data/raw")  # bring-your-own data: data.path, data.test_path live here
PREPARED_DIR = Path("data/prepared")  # X.npy (m, n_x) raw rows, y.npy, meta.json, origin.npy (with a target)
PREPARED_X = PREPARED_DIR / "X.npy"
SPLIT_DIR = Path("data/split")  # X_<split>.npy, y_<split>.npy, normalizer.json
NORMALIZER = SPLIT_DIR / "normalizer.json"  # fitted statistics, class names, image shape, source
SPLIT_REPORT = Path("reports/split.json")  # sizes, class balance, duplicates

# --- the study ------------------------------------------------------------------------------------
STUDIES_DIR = Path("studies")  # the default sqlite storage, and where.json naming the study in use
STUDY_DB = STUDIES_DIR / "optuna.db"
STUDY_WHERE = STUDIES_DIR / "where.json"
STUDY_REPORTS = Path("reports/study")
BEST_PARAMS = STUDY_REPORTS / "best_params.json"  # the best trial of the current study
TRIALS_CSV = STUDY_REPORTS / "trials.csv"  # every trial of the current study
DEV_PREDICTIONS = STUDY_REPORTS / "dev_predictions.npz"

# --- the final model ------------------------------------------------------------------------------
MODEL_STEM = Path("models/final")  # final.npz (weights) + final.json (architecture, normalizer, ...)
MODEL_WEIGHTS = MODEL_STEM.with_suffix(".npz")
MODEL_META = MODEL_STEM.with_suffix(".json")
TRAIN_METRICS = Path("reports/train.json")
TRAIN_HISTORY = Path("reports/train_history.json")  # one row per epoch (DVC plots)
TRAIN_HEALTH = Path("reports/train_health.json")  # one row per epoch and layer: gradient health

# --- evaluation and report ------------------------------------------------------------------------
METRICS = Path("reports/metrics.json")  # train/dev/test errors: the only stage that reads test
CONFUSION = Path("reports/confusion.json")  # one {actual, predicted} row per test example
PER_CLASS = Path("reports/per_class.json")  # per-class precision/recall/support: a report, not a DVC metric
DIAGNOSIS_MD = Path("reports/diagnosis.md")
DIAGNOSIS_HTML = Path("reports/report.html")
DIAGNOSIS_JSON = Path("reports/diagnosis.json")

SPLITS = ("train", "train_dev", "dev", "test")  # the split names, in reading order


def split_file(kind: str, split: str) -> Path:
    """``data/split/X_train.npy`` and friends: ``kind`` is "X" or "y"."""
    return SPLIT_DIR / f"{kind}_{split}.npy"


def repo_root(start: str | Path | None = None) -> Path:
    """PIPELINE_HOME, else DVC_ROOT, else the nearest folder upward holding .dvc or .git.

    The study storage and the MLflow store live here, shared by every stage and sweep. DVC sets
    DVC_ROOT for every stage command; for a queued experiment it names the workspace, while the
    command runs in a temporary copy under ``<workspace>/.dvc/tmp/exps``.
    """
    for var in ("PIPELINE_HOME", "DVC_ROOT"):
        if os.environ.get(var):
            return _outside_exp_copy(Path(os.environ[var]).resolve())
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return _outside_exp_copy(folder)
    return here


def _outside_exp_copy(path: Path) -> Path:
    # A queued experiment runs in <workspace>/.dvc/tmp/exps/<tmp>: share the workspace's stores.
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path
