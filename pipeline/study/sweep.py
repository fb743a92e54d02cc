"""``pipeline sweep``: launch or resume a sweep (trials, timeout, workers, storage, study name).

The same engine as the ``tune`` stage. Several workers on one machine: ``--workers N``. More
machines: start a sweep once, then ``pipeline sweep --resume --workers N --storage <postgres URL>``
on each other machine (see docs/sweeps.md). ``--n-trials`` is the study's total cap.
"""

from __future__ import annotations

import argparse

import optuna

from pipeline.config import Params, load_params
from pipeline.study import runner
from pipeline.study.storage import mask_url
from pipeline.study.worker import TrialPrinter


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-trials", type=int, help="total trials of the study over all runs and workers (tune.n_trials)"
    )
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts (tune.timeout)")
    parser.add_argument(
        "--workers", type=int, dest="n_workers", help="worker processes on this machine (tune.n_workers)"
    )
    parser.add_argument("--storage", help="storage URL, e.g. postgresql+psycopg2://user@host/db (tune.storage)")
    parser.add_argument("--study-name", help="study to create or resume (tune.study_name)")
    parser.add_argument("--resume", action="store_true", help="continue an existing study (required if it has trials)")
    parser.add_argument(
        "--pruner", choices=sorted(runner.PRUNERS), help="pruner on the per-epoch dev cost (tune.pruner)"
    )
    parser.add_argument("--threads", type=int, help="BLAS threads per worker (default: 1 with several workers)")
    parser.add_argument("--data", default="data/split", dest="data_dir", help="split folder (default: data/split)")
    parser.add_argument("--heartbeat-interval", type=int, help="seconds between a trial's heartbeats (default: 10)")
    parser.add_argument(
        "--grace-period", type=int, help="seconds of silence before a trial counts as dead (default: 30)"
    )
    parser.add_argument("--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow runs")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    overrides = {
        k: getattr(args, k)
        for k in ("n_trials", "timeout", "n_workers", "storage", "study_name", "pruner", "threads", "data_dir")
    }
    overrides |= {"heartbeat_interval": args.heartbeat_interval, "grace_period": args.grace_period}
    overrides["tracking"] = args.tracking
    cfg = runner.config_from_params(params, args.params, **overrides)
    sweep(cfg, params, resume=args.resume)
    return 0


def sweep(cfg: runner.SweepConfig, params: Params, *, resume: bool | None) -> optuna.Study:
    """Prepare, run and finish a sweep, printing a line per trial; shared with the tune stage."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our trial lines replace Optuna's (and Ctrl-C tracebacks)
    study, cfg = runner.prepare(cfg, params, resume=resume)
    done = cfg.counted_at_start
    print(
        f"study '{cfg.study_name}' in {mask_url(cfg.storage)}: {done}/{cfg.n_trials} trials done, "
        f"{cfg.n_workers} worker(s), pruner {cfg.pruner}",
        flush=True,
    )
    try:
        codes = runner.run_sweep(cfg, [TrialPrinter(cfg)])
    except KeyboardInterrupt:  # fail what was cut short, close the parent run as KILLED
        runner.finish(study, cfg, status="KILLED")
        raise
    runner.finish(study, cfg)
    for i, code in enumerate(codes):
        if code < 0:
            print(f"worker {i} was killed by signal {-code}; the heartbeat failed its trial for a retry")
    try:
        best = study.best_trial
        print(f"best: trial {best.number} dev_error={best.value:.4f} {best.user_attrs.get('values', best.params)}")
    except ValueError:
        print("no trial completed yet")
    return study
