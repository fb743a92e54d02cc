"""``pipeline sweep``: launch or resume a sweep (trials, timeout, workers, storage, study name).

The same engine as the ``tune`` stage. Several workers on one machine: ``--workers N``. More
machines: start a sweep once, then ``pipeline sweep --resume --workers N --storage <postgres URL>``
on each other machine (see docs/sweeps.md). ``--n-trials`` is the study's total cap. This module
is the command-line edge: it prints the study line, one line per trial, what became of tracking,
why the sweep stopped and the best trial.

Stopped by a signal, the sweep cleans up the same way for Ctrl-C and SIGTERM (trials marked FAIL,
their runs and the parent run KILLED) and exits 130 for Ctrl-C, 143 for SIGTERM. A signal that
arrives while the sweep closes its parent run waits until the run is closed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import load_params
from pipeline.data import memory
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import load_npy
from pipeline.study import launch
from pipeline.study.config import PRUNERS, TUNE_OVERRIDES, SweepConfig, SweepState, config_from_params
from pipeline.study.objective import class_count
from pipeline.study.signals import DeferredInterrupt, Terminated, exit_code, sigterm_as_interrupt
from pipeline.study.storage import mask_url

if TYPE_CHECKING:
    from pipeline.study.spawn import Workers

# How the one line that starts a new study names what changed.
PART_NAMES = {
    "train_data": "the train data",
    "dev_data": "the dev data",
    "split": "the split settings",
    "space": "the search space",
    "fixed": "the fixed training settings",
    "scoring": "the scoring rule (tune.cv_folds)",
    "code": "the network or objective code",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-trials", type=int, help="total trials of the study over all runs and workers (tune.n_trials)"
    )
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts (tune.timeout)")
    parser.add_argument(
        "--workers", type=int, dest="n_workers", help="worker processes on this machine (tune.n_workers)"
    )
    parser.add_argument("--storage", help="storage URL, e.g. postgresql+psycopg2://user@host/db (tune.storage)")
    parser.add_argument("--study-name", help="base name of the study to create or resume (tune.study_name)")
    parser.add_argument("--resume", action="store_true", help="continue an existing study (required if it has trials)")
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="with --resume: continue a study whose split, space or fixed settings differ (recorded on the study)",
    )
    parser.add_argument("--pruner", choices=sorted(PRUNERS), help="pruner on the per-epoch dev cost (tune.pruner)")
    parser.add_argument(
        "--threads", type=int, help="BLAS threads per worker (default: train.blas_threads, else by size and free cores)"
    )
    parser.add_argument("--root", default=".", help="workspace whose data/split the trials read (default: .)")
    parser.add_argument("--heartbeat-interval", type=int, help="seconds between a trial's heartbeats (default: 10)")
    parser.add_argument(
        "--grace-period", type=int, help="seconds of silence before a trial counts as dead (default: 30)"
    )
    parser.add_argument("--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow runs")


def run(args: argparse.Namespace) -> int:
    if args.allow_mixed and not args.resume:
        raise ConfigError("--allow-mixed continues an existing study: use it with --resume")
    cfg = config_from_params(
        load_params(args.params),
        root=args.root,
        threads=args.threads,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        tracking=args.tracking,
        allow_mixed=args.allow_mixed,
        **{k: getattr(args, k) for k in TUNE_OVERRIDES},
    )
    sweep(cfg, resume=args.resume)
    # reports/ describe the study as the tune stage last saw it: say so rather than let them go stale
    print("the reports in reports/ predate this sweep: run `dvc repro` to refresh them (it resumes this study)")
    return 0


def sweep(cfg: SweepConfig, *, resume: bool | None) -> optuna.Study:
    """Open, run and finish a sweep, printing a line per trial; shared with the tune stage.

    SIGTERM exits 143 (``SystemExit``) after the same cleanup as Ctrl-C, which propagates as
    KeyboardInterrupt (the command line exits 130).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our trial lines replace Optuna's (and Ctrl-C tracebacks)
    try:
        with sigterm_as_interrupt():
            return _sweep(cfg, resume)
    except Terminated:
        print("terminated (SIGTERM): trials and runs were marked; resume with --resume", file=sys.stderr)
        raise SystemExit(exit_code(Terminated())) from None


def _sweep(cfg: SweepConfig, resume: bool | None) -> optuna.Study:
    check_memory(cfg)
    if cfg.n_workers == 1:
        return _run(cfg, resume, None)
    from pipeline.study.spawn import Workers

    # Started now, the process that forks the workers imports while this one opens the sweep.
    with Workers(cfg.n_workers, tracking=cfg.tracking) as workers:
        return _run(cfg, resume, workers)


def _run(cfg: SweepConfig, resume: bool | None, workers: Workers | None) -> optuna.Study:
    study, state = launch.open_sweep(cfg, resume=resume)
    if state.previous is not None:
        print(f"{why_new(state)}: starting study '{state.study_name}'", flush=True)
    done = state.counted_at_start
    if state.complete:
        if state.stop_cause:
            print(f"study '{state.study_name}' stopped at its {state.stop_cause}; nothing to run", flush=True)
        else:
            print(f"study '{state.study_name}' is complete: {done}/{cfg.n_trials} trials; nothing to run", flush=True)
        print_best(study)
        return study
    print(
        f"study '{state.study_name}' in {mask_url(cfg.storage)}: {done}/{cfg.n_trials} trials done, "
        f"{cfg.n_workers} worker(s), pruner {cfg.tune.pruner}",
        flush=True,
    )
    watch_tracking(cfg)
    try:
        codes = launch.run_sweep(cfg, state, [TrialPrinter(cfg, state)], workers)
    except KeyboardInterrupt:  # fail what was cut short, close the parent run as KILLED
        _finish(study, cfg, state, "KILLED")
        raise
    except PipelineError:  # close the parent run as FAILED if the storage still lets us, then the one line
        with contextlib.suppress(PipelineError):
            _finish(study, cfg, state, "FAILED")
        raise
    _finish(study, cfg, state, "FINISHED")
    for i, code in enumerate(codes):
        if code < 0:
            print(f"worker {i} was killed by signal {-code}; the heartbeat failed its trial for a retry")
    cause = study.user_attrs.get("stop_cause")
    if cause:
        print(f"stopped: {cause}")
    print_best(study)
    return study


def check_memory(cfg: SweepConfig) -> None:
    """DataError (exit 3) before anything is created when the workers' trials would not fit in memory:
    the mapped train and dev rows once, and each worker training the space's largest network
    (``pipeline.data.memory.tune_set``). Without a split, the fingerprint says what is missing."""
    paths = [cfg.split_dir / f"X_{name}.npy" for name in ("train", "dev")]
    if not all(p.exists() for p in paths):
        return
    (m_train, n_x), (m_dev, _) = (load_npy(p).shape for p in paths)  # memory-mapped: only the headers are read
    ws = memory.tune_set(cfg.params, n_x, class_count(cfg.root), m_train, m_dev)
    memory.check_working_set(
        ws,
        f"tune: {cfg.n_workers} worker(s) training up to {cfg.tune.space.n_layers.high} x "
        f"{cfg.tune.space.n_units.high} units on {m_train} x {n_x} rows",
        "lower tune.n_workers, tune.space.n_units.high or n_layers.high, or bring fewer examples",
    )


def _finish(study: optuna.Study, cfg: SweepConfig, state: SweepState, status: str) -> None:
    """``launch.finish``, with Ctrl-C and SIGTERM held until the parent run is closed (then raised)."""
    with DeferredInterrupt() as held:
        for line in launch.finish(study, cfg, state, status):
            print(line, flush=True)
    held.check()


def watch_tracking(cfg: SweepConfig, prefix: str = "") -> None:
    """Print a line when the tracking server goes away or comes back (tracking on only)."""
    if not cfg.tracking:
        return
    from pipeline import tracking

    tracking.OUTBOX.notify = lambda line: print(f"{prefix}{line}", flush=True)


def why_new(state: SweepState) -> str:
    """``the dev data changed since study 'X'`` (or why X cannot be compared)."""
    if not state.changed:
        return f"study '{state.previous}' records no fingerprint"
    names = [PART_NAMES.get(p, p) for p in state.changed]
    what = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    shown = f" ({'; '.join(state.details)})" if state.details else ""
    return f"{what}{shown} changed since study '{state.previous}'"


def print_best(study: optuna.Study) -> None:
    try:
        best = study.best_trial
        print(f"best: trial {best.number} dev_error={best.value:.4f} {best.user_attrs.get('values', best.params)}")
    except ValueError:
        print("no trial completed yet")


class TrialPrinter:
    """Optuna callback printing ``progress_line`` for each finished trial (command-line edges only)."""

    def __init__(self, cfg: SweepConfig, state: SweepState, prefix: str = "") -> None:
        self.cfg, self.state, self.prefix = cfg, state, prefix

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        print(f"{self.prefix}{progress_line(study, trial, self.cfg, self.state)}", flush=True)


def progress_line(study: optuna.Study, trial: FrozenTrial, cfg: SweepConfig, state: SweepState) -> str:
    """One line per finished trial: count, number, state, dev error, params, elapsed and ETA."""
    counted = len(study.get_trials(deepcopy=False, states=launch.COUNTED))
    values = trial.user_attrs.get("values") or trial.params
    shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
    ok = trial.state == TrialState.COMPLETE
    result = f"dev_error={trial.value:.4f}" if ok else trial.user_attrs.get("cause", "no cause recorded")
    elapsed = trial.duration.total_seconds() if trial.duration is not None else 0.0
    done_here = counted - state.counted_at_start
    eta = "?"
    if done_here > 0 and counted < cfg.n_trials:
        eta = _clock((time.time() - state.started) / done_here * (cfg.n_trials - counted))
    elif counted >= cfg.n_trials:
        eta = "done"
    head = f"[{counted}/{cfg.n_trials}] trial {trial.number} {trial.state.name} {result}"
    return f"{head} | {shown} | {elapsed:.1f}s | ETA {eta}{tracking_note()}"


def tracking_note() -> str:
    """`` | tracking unreachable: 2 run(s) waiting`` while the server is away; empty otherwise."""
    tracking = sys.modules.get("pipeline.tracking")  # only when tracking is on (imported by the trial runs)
    if tracking is None or not tracking.OUTBOX.unreachable:
        return ""
    return f" | tracking unreachable: {len(tracking.OUTBOX.pending)} run(s) waiting"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return "off" if value == 0 else f"{value:.3g}"
    return str(value)


def _clock(seconds: float) -> str:
    seconds = math.ceil(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
