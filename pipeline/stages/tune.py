"""DVC stage ``tune``: run (or resume) the Optuna study of params.yaml, write its best parameters.

The study is the one of this fingerprint (``pipeline.study.identity``): a change of the data,
the split, the search space, a fixed training setting or the trial code starts a new study
``<tune.study_name>-<digest>`` and says why; an unchanged rerun resumes it, so raising
``tune.n_trials`` runs only the missing trials. The study lives in ``studies/`` (a persistent
DVC output). Outputs, from the current study only: ``reports/study/best_params.json`` (read by
the train stage), ``reports/study/trials.csv``, ``reports/study/dev_predictions.npz`` (every
COMPLETE trial's predicted class per dev example, ``pipeline.study.predictions``; read by the
report), and ``studies/where.json`` naming the study.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.config import load_params
from pipeline.errors import NumericalError
from pipeline.io import atomic_write_bytes, atomic_write_json, load_npy
from pipeline.paths import (
    BEST_PARAMS,
    DEV_PREDICTIONS,
    STUDIES_DIR,
    STUDY_REPORTS,
    STUDY_WHERE,
    TRIALS_CSV,
    split_file,
)
from pipeline.study import predictions
from pipeline.study.config import config_from_params
from pipeline.study.storage import mask_url
from pipeline.study.sweep import sweep


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", help="workspace whose data/split the trials read (default: .)")
    parser.add_argument("--out", default=str(STUDY_REPORTS), help=f"output folder (default: {STUDY_REPORTS})")
    parser.add_argument("--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow runs")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    cfg = config_from_params(params, root=args.root, tracking=args.tracking)
    # DVC expects the out `studies/` here even when the study lives elsewhere (PostgreSQL, or the
    # workspace's studies/ when this runs in a queued experiment's temporary copy).
    STUDIES_DIR.mkdir(exist_ok=True)
    study = sweep(cfg, resume=None)
    where = {
        "storage": mask_url(cfg.storage),
        "study_name": study.study_name,
        "base_name": params.tune.study_name,
        "fingerprint": study.user_attrs.get("fingerprint"),
    }
    atomic_write_json(STUDY_WHERE, where)
    path = write_outputs(study, args.out, root=args.root)
    print(f"wrote {path}, {Path(args.out) / TRIALS_CSV.name} and {Path(args.out) / DEV_PREDICTIONS.name}")
    return 0


def write_outputs(study: optuna.Study, folder: str | Path = STUDY_REPORTS, root: str | Path = ".") -> Path:
    """Write ``best_params.json``, ``trials.csv`` and ``dev_predictions.npz`` of ``study`` into ``folder``
    atomically, each file on its own; return the JSON path.

    ``seed_trial`` is the trial number whose random stream the best trial trained with (the
    original's, for a retried trial): ``trial_seed(seed, seed_trial)`` retrains it exactly. The
    predictions' ``y_dev`` is ``root``'s dev split, the one the study was scored on (its fingerprint).
    """
    folder = Path(folder)
    try:
        best = study.best_trial
    except ValueError:
        raise NumericalError(
            f"study '{study.study_name}' has no completed trial; see the causes in trials.csv or widen tune.space"
        ) from None
    trials = study.get_trials(deepcopy=False)
    y_dev = load_npy(Path(root) / split_file("y", "dev"))
    numbers, predicted = predictions.gather(trials, len(y_dev))  # checked before anything is written
    _write_csv(folder / TRIALS_CSV.name, trials)
    predictions.write_dev_predictions(folder / DEV_PREDICTIONS.name, numbers, predicted, y_dev)
    best_params = {
        "study_name": study.study_name,
        "fingerprint": study.user_attrs.get("fingerprint"),
        "trial_number": best.number,
        "seed_trial": best.user_attrs.get("seed_trial", best.number),
        "value": best.value,
        "params": best.user_attrs.get("values", best.params),
    }
    path = folder / BEST_PARAMS.name
    atomic_write_json(path, best_params)
    return path


def _write_csv(path: Path, trials: list[FrozenTrial]) -> None:
    param_keys = sorted({k for t in trials for k in t.params})
    # "values" is the params columns again; the predictions are dev_predictions.npz, not a cell
    attr_keys = sorted({k for t in trials for k in t.user_attrs if k not in ("values", predictions.ATTR)})
    header = ["number", "state", "value", "duration_s", *param_keys, *attr_keys]
    rows = []
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        row = [t.number, t.state.name, t.value, duration]
        row += [t.params.get(k) for k in param_keys] + [_cell(t.user_attrs.get(k)) for k in attr_keys]
        rows.append(row)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value
