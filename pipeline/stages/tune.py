"""DVC stage ``tune``: run (or resume) the Optuna study of params.yaml, write its best parameters.

Outputs: ``reports/study/best_params.json`` (read by the train stage) and
``reports/study/trials.csv``. The study itself lives in ``studies/`` (a persistent DVC output),
so ``dvc repro`` resumes it; ``tune.n_trials`` is the total, so a rerun runs only missing trials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from pipeline.io import atomic_write_json
from pipeline.study import runner
from pipeline.study.storage import mask_url
from pipeline.study.sweep import sweep


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/split", help="split folder (default: data/split)")
    parser.add_argument("--out", default="reports/study", help="output folder (default: reports/study)")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    cfg = runner.config_from_params(params, args.params, data_dir=args.data)
    # DVC expects the out `studies/` here even when the study lives elsewhere (PostgreSQL, or the
    # workspace's studies/ when this runs in a queued experiment's temporary copy).
    Path("studies").mkdir(exist_ok=True)
    where = {"storage": mask_url(cfg.storage), "study_name": cfg.study_name}
    atomic_write_json(Path("studies/where.json"), where)
    study = sweep(cfg, params, resume=None)
    path = runner.write_outputs(study, args.out)
    print(f"wrote {path} and {Path(args.out) / 'trials.csv'}")
    return 0
