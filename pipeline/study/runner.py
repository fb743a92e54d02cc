"""Run a study: prepare the storage and MLflow once, then run trials in one or more worker processes.

The launcher (``prepare``) creates the storage tables, the study and the MLflow parent run
before any worker starts, because workers that create a brand-new schema at the same moment
crash. Each worker (``run_worker``) then loops: take the claim lock, fail trials of dead
workers, count the trials, and start one more trial only while the study is under its cap.
``tune.n_trials`` is the total over all runs and workers, so a rerun runs only the missing
trials. COMPLETE and PRUNED trials count (a diverged trial is PRUNED); FAIL trials do not: a
trial lost with its worker is retried with the same parameters, an interrupted one is replaced.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import Params, load_params
from pipeline.errors import ConfigError, NumericalError, PipelineError, StorageError
from pipeline.io import atomic_write_bytes, atomic_write_json
from pipeline.study.objective import Objective, load_split
from pipeline.study.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, ClaimLock, mask_url, open_storage, resolve_url

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # states that use up the trial cap
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class SweepConfig:
    """Everything a worker needs, as plain values (it travels to worker processes as JSON)."""

    params_path: str
    storage: str  # a resolved URL
    study_name: str
    n_trials: int  # the cap on COMPLETE + PRUNED trials over all runs and workers
    n_workers: int = 1
    timeout: float | None = None  # seconds from the sweep's start; no trial starts after it
    pruner: str = "median"
    data_dir: str = "data/split"
    threads: int | None = None  # BLAS threads per worker; None: 1 with several workers, else chosen per trial
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    tracking: bool = True
    parent_run_id: str | None = None  # set by prepare()
    started: float = 0.0  # time.time() at the sweep's start, set by prepare()
    counted_at_start: int = 0  # trials already counted when the sweep started, for the ETA

    @property
    def deadline(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout

    @property
    def blas_threads(self) -> int | None:
        return self.threads if self.threads is not None else (1 if self.n_workers > 1 else None)


def config_from_params(params: Params, params_path: str | Path, **overrides: Any) -> SweepConfig:
    """The sweep configuration from params.yaml's tune section, with command-line overrides (None: keep)."""
    tune = params.tune
    values = {
        "params_path": str(params_path),
        "storage": tune.storage,
        "study_name": tune.study_name,
        "n_trials": tune.n_trials,
        "n_workers": tune.n_workers,
        "timeout": tune.timeout,
        "pruner": tune.pruner,
    }
    values |= {k: v for k, v in overrides.items() if v is not None}
    values["storage"] = resolve_url(values["storage"])
    cfg = SweepConfig(**values)
    if cfg.n_trials < 1 or cfg.n_workers < 1:
        raise ConfigError("the number of trials and of workers must be >= 1")
    if cfg.timeout is not None and cfg.timeout <= 0:
        raise ConfigError("the timeout must be > 0 seconds")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError("BLAS threads per worker must be >= 1")
    if cfg.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{cfg.pruner}'; choose one of {', '.join(PRUNERS)}")
    return cfg


# --- sampler and pruner --------------------------------------------------------------------------


def make_sampler(params: Params, worker_index: int = 0, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """TPE seeded from params.seed; each worker and each resumed run gets its own stream.

    Without the worker index, workers would draw the same random start-up points; without the
    number of existing trials, a resumed run would redraw the first run's points.
    """
    seed = int(np.random.SeedSequence([params.seed, worker_index, n_existing]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=params.tune.startup_trials)


def _max_epochs(params: Params) -> int:
    space = params.tune.space
    return space.epochs.high if space.epochs is not None else params.train.epochs


PRUNERS: dict[str, Callable[[Params], optuna.pruners.BasePruner]] = {
    # Pruning looks at the dev cost of every epoch; the first tenth of training is never judged.
    "median": lambda p: optuna.pruners.MedianPruner(
        n_startup_trials=p.tune.startup_trials, n_warmup_steps=max(1, _max_epochs(p) // 10)
    ),
    "hyperband": lambda p: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=_max_epochs(p)),
    "none": lambda p: optuna.pruners.NopPruner(),
}


# --- launcher ------------------------------------------------------------------------------------


def prepare(cfg: SweepConfig, params: Params, *, resume: bool | None = None) -> tuple[optuna.Study, SweepConfig]:
    """Create (or load) the study and the MLflow parent run before any worker starts.

    ``resume``: True requires an existing study, False a new one (or an empty one), None takes
    either. Fails the trials of dead workers, ends their orphaned MLflow runs, and returns the
    study with the configuration completed by the parent run id and start time.
    """
    load_split(cfg.data_dir)  # fail on missing data before creating anything
    storage = open_storage(
        cfg.storage, create=not resume, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period
    )
    exists = cfg.study_name in _study_names(storage, cfg.storage)
    if resume and not exists:
        raise ConfigError(f"no study '{cfg.study_name}' in {mask_url(cfg.storage)}; drop --resume to create it")
    study = optuna.create_study(storage=storage, study_name=cfg.study_name, direction="minimize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"study '{cfg.study_name}' maximizes; it was not made by this pipeline, pick another name")
    n_trials = len(study.get_trials(deepcopy=False))
    if resume is False and n_trials:
        raise ConfigError(
            f"study '{cfg.study_name}' already has {n_trials} trials in {mask_url(cfg.storage)}; "
            "pass --resume to continue it or --study-name to start another"
        )
    clean_up(study, cfg)
    parent = None
    if cfg.tracking:
        from pipeline import tracking

        tags = {"n_workers": cfg.n_workers, "n_trials_cap": cfg.n_trials, "storage": mask_url(cfg.storage)}
        parent = tracking.prepare_study_run(cfg.study_name, params.tracking.experiment, tags)
        study.set_user_attr("mlflow_parent_run_id", parent)
        study.set_user_attr("mlflow_parent_run_ids", [*study.user_attrs.get("mlflow_parent_run_ids", []), parent])
    counted = len(study.get_trials(deepcopy=False, states=COUNTED))
    return study, dataclasses.replace(cfg, parent_run_id=parent, started=time.time(), counted_at_start=counted)


def _study_names(storage: optuna.storages.BaseStorage, url: str) -> set[str]:
    try:
        return {s.study_name for s in storage.get_all_studies()}
    except Exception as e:  # sqlalchemy errors: the server went away after connecting
        raise StorageError(f"cannot read studies from {mask_url(url)}: {type(e).__name__}") from None


def clean_up(study: optuna.Study, cfg: SweepConfig, *, mlflow: bool = True) -> None:
    """Fail the RUNNING trials of dead workers (retrying their parameters) and end their MLflow runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat older than the grace period
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A worker killed between creating a trial and its first heartbeat leaves a trial the
        # heartbeat check never sees; the objective tags "worker" first thing, so no tag = dead.
        if (
            "worker" not in t.user_attrs
            and t.datetime_start
            and (now - t.datetime_start).total_seconds() > cfg.grace_period
        ):
            with contextlib.suppress(ValueError):  # another worker got there first
                study.tell(t.number, state=TrialState.FAIL)
    if mlflow and cfg.tracking:
        from pipeline import tracking

        tracking.mark_orphans(study)


def run_sweep(cfg: SweepConfig, callbacks: Sequence[TrialCallback] = ()) -> list[int]:
    """Run the workers of a prepared sweep (``prepare`` first); return their exit codes.

    With one worker the trials run in this process and ``callbacks`` see each finished trial;
    with several, each worker process prints its own trial lines. A worker killed by a signal
    (negative code) does not fail the sweep: the heartbeat fails its trial and the others retry
    it. Ctrl-C reaches the running trials (each is marked and its run KILLED), then propagates
    as KeyboardInterrupt.
    """
    if cfg.n_workers == 1:
        run_worker(cfg, 0, callbacks)
        return [0]
    payload = json.dumps(dataclasses.asdict(cfg))
    procs = [
        # Own session: a terminal Ctrl-C reaches the launcher only, which forwards exactly one
        # SIGINT per worker (a second SIGINT would cut a worker's cleanup short).
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.study.worker", "--index", str(i), payload], start_new_session=True
        )
        for i in range(cfg.n_workers)
    ]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    failed = [(i, c) for i, c in enumerate(codes) if c > 0 and c != 130]
    if failed:
        raise PipelineError(f"worker {failed[0][0]} exited with code {failed[0][1]}; see its error above")
    if 130 in codes:
        raise KeyboardInterrupt
    return codes


def finish(study: optuna.Study, cfg: SweepConfig, status: str = "FINISHED") -> None:
    """End the sweep: fail what dead workers left, close the parent run with the study's outcome."""
    clean_up(study, cfg)
    if cfg.parent_run_id is not None:
        from pipeline import tracking

        tracking.finish_study_run(cfg.parent_run_id, study, status)


# --- worker --------------------------------------------------------------------------------------


def run_worker(cfg: SweepConfig, worker_index: int = 0, callbacks: Sequence[TrialCallback] = ()) -> int:
    """Run trials until the study reaches its cap or the timeout passes; return how many ran here."""
    params = load_params(cfg.params_path)
    data = load_split(cfg.data_dir)
    on_stale = _mark_orphans if cfg.parent_run_id is not None else None
    storage = open_storage(
        cfg.storage, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period, on_stale=on_stale
    )
    study = optuna.load_study(study_name=cfg.study_name, storage=storage, pruner=PRUNERS[cfg.pruner](params))
    study.sampler = make_sampler(params, worker_index, len(study.get_trials(deepcopy=False)))
    lock = ClaimLock(cfg.storage, cfg.study_name)
    interrupt = DeferredInterrupt()

    def trial_started() -> None:
        lock.release()  # the trial exists and counts as RUNNING: other workers may claim now
        interrupt.check()  # a Ctrl-C during the claim lands here, where the objective marks the trial

    objective = Objective(
        params, data, cfg.parent_run_id, on_start=trial_started, checkpoint=interrupt.check, threads=cfg.blas_threads
    )
    all_callbacks = [MaxTrialsCallback(cfg.n_trials, states=COUNTED), *callbacks]
    poll = min(1.0, cfg.heartbeat_interval / 2)
    ran = 0
    with interrupt:
        try:
            while cfg.deadline is None or time.time() < cfg.deadline:
                interrupt.check()
                lock.acquire()
                try:
                    clean_up(study, cfg, mlflow=False)  # the heartbeat callback ends orphaned runs
                    states = Counter(t.state for t in study.get_trials(deepcopy=False))
                    if sum(states[s] for s in (*COUNTED, TrialState.RUNNING)) < cfg.n_trials:
                        ran += 1
                        _run_one(study, objective, all_callbacks)  # releases the lock once its trial exists
                        continue
                finally:
                    lock.release()
                if states[TrialState.RUNNING] == 0:
                    break
                # Full, but others are still running: one may die and need its trial retried here.
                time.sleep(poll)
        finally:
            lock.close()
    return ran


def _run_one(study: optuna.Study, objective: Objective, callbacks: list[TrialCallback]) -> None:
    try:
        study.optimize(objective, n_trials=1, callbacks=callbacks)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # the heartbeat check of another worker failed this (slow) trial and retries it
    except ValueError as e:
        if not str(e).startswith("Cannot tell a"):  # same cause, seen when the trial ends
            raise


class DeferredInterrupt:
    """Ctrl-C and SIGTERM as a flag that the worker turns into KeyboardInterrupt at safe points.

    A KeyboardInterrupt raised in the middle of a storage write leaves that connection's
    transaction open: on sqlite the heartbeat thread then waits for the lock while the main
    thread waits for the heartbeat thread. So the first signal only sets the flag, checked
    before each trial and each epoch; a second one interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _mark_orphans(study: optuna.Study, trial: FrozenTrial) -> None:
    from pipeline import tracking

    tracking.mark_orphans(study)


# --- outputs and progress ------------------------------------------------------------------------


def write_outputs(study: optuna.Study, folder: str | Path) -> Path:
    """Write ``best_params.json`` and ``trials.csv`` into ``folder`` atomically; return the JSON path."""
    folder = Path(folder)
    try:
        best = study.best_trial
    except ValueError:
        raise NumericalError(
            f"study '{study.study_name}' has no completed trial; see the causes in trials.csv or widen tune.space"
        ) from None
    trials = study.get_trials(deepcopy=False)
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "trials.csv", trials)
    best_params = {
        "study_name": study.study_name,
        "trial_number": best.number,
        "value": best.value,
        "params": best.user_attrs.get("values", best.params),
    }
    path = folder / "best_params.json"
    atomic_write_json(path, best_params)
    return path


def _write_csv(path: Path, trials: list[FrozenTrial]) -> None:
    param_keys = sorted({k for t in trials for k in t.params})
    attr_keys = sorted({k for t in trials for k in t.user_attrs if k != "values"})
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


def progress_line(study: optuna.Study, trial: FrozenTrial, cfg: SweepConfig) -> str:
    """One line per finished trial: count, number, state, dev error, params, elapsed and ETA."""
    counted = len(study.get_trials(deepcopy=False, states=COUNTED))
    values = trial.user_attrs.get("values") or trial.params
    shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
    ok = trial.state == TrialState.COMPLETE
    result = f"dev_error={trial.value:.4f}" if ok else trial.user_attrs.get("cause", "no cause recorded")
    elapsed = trial.duration.total_seconds() if trial.duration is not None else 0.0
    done_here = counted - cfg.counted_at_start
    eta = "?"
    if done_here > 0 and counted < cfg.n_trials:
        eta = _clock((time.time() - cfg.started) / done_here * (cfg.n_trials - counted))
    elif counted >= cfg.n_trials:
        eta = "done"
    head = f"[{counted}/{cfg.n_trials}] trial {trial.number} {trial.state.name} {result}"
    return f"{head} | {shown} | {elapsed:.1f}s | ETA {eta}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return "off" if value == 0 else f"{value:.3g}"
    return str(value)


def _clock(seconds: float) -> str:
    seconds = math.ceil(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
