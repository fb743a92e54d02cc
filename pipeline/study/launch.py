"""The launcher: open the sweep's study, clean up after dead workers, run the workers, finish.

``open_sweep`` runs once, before any worker starts, holding the creation lock of the study
storage and of the MLflow store (``locks``): two sweeps started at the same instant on brand-new
stores then both join one study. It fingerprints the data, settings and code (``identity``),
picks the study of that fingerprint (``<base>-<digest>``), checks backprop once before the
study's first trial (``gate``), and opens the MLflow parent run only when a trial will run. When
no other launcher is alive on the storage (``locks.LiveLock``) it also closes the parent runs
that dead launchers left RUNNING. ``tune.n_trials`` is the total over all runs and workers.

``run_sweep`` runs the workers: each gets the launcher's pid, and stops once its launcher is gone
(``signals``). Ctrl-C and SIGTERM reach each worker once. ``finish`` closes the parent run with
the study's outcome, the sweep's effort (``effort``) and its stop cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import optuna
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import ConfigError, StorageError
from pipeline.paths import split_file
from pipeline.study import identity, locks
from pipeline.study.config import SweepConfig, SweepState
from pipeline.study.effort import study_effort
from pipeline.study.gate import gradient_gate
from pipeline.study.noise_floor import noise_floor_stop
from pipeline.study.storage import mask_url, open_storage, rest, sqlite_path, storage_errors, use_wal

if TYPE_CHECKING:
    from pipeline.study.spawn import Workers

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # states that use up the trial cap
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
_live: dict[tuple[str, str], locks.LiveLock] = {}  # (storage, study) -> the lock this launcher holds shared
_writing: dict[tuple[str, str], RDBStorage] = {}  # (storage, study) -> a sqlite storage in WAL mode for the sweep


INTERMEDIATE_VALUES = (
    "dev_cost per epoch: the plain cross-entropy of the dev predictions (no L2 term), the quantity "
    "the pruner compares (the fold mean with tune.cv_folds); the objective is dev_error"
)


def open_sweep(cfg: SweepConfig, *, resume: bool | None = None) -> tuple[optuna.Study, SweepState]:
    """Open (or create) the study of this fingerprint and, if a trial will run, its MLflow parent run.

    ``resume``: True continues the newest study of ``tune.study_name`` and refuses one whose
    fingerprint differs (unless ``cfg.allow_mixed``, for the settings parts); False requires a new
    or empty study; None (the tune stage) takes the study of this fingerprint, or starts one.
    Every storage failure is a one-line ``StorageError``; a failed open leaves the file as it was.
    """
    fp = identity.fingerprint(cfg.params, cfg.split_dir)  # also fails on missing data before creating anything
    path = sqlite_path(cfg.storage)
    if path is not None and resume and not path.exists():
        raise StorageError(f"no study storage at {path}; drop --resume to create it, or check --storage")
    if path is not None:  # the folder of the creation lock's file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{path.parent}: cannot create the folder ({e.strerror}); check --storage") from None
    live = locks.LiveLock(cfg.storage)
    try:
        with storage_errors(cfg.storage):
            with locks.creation_lock(cfg.storage):  # held briefly: every launcher of the storage passes here
                study, state = _open(cfg, fp, resume, alone=live.alone())
                if not state.complete:
                    live.hold()
            clean_up(study, cfg)  # fail the RUNNING trials of dead workers, end their runs
    except BaseException:
        live.close()
        raise
    if state.complete:
        live.close()
    else:
        previous = _live.pop((cfg.storage, state.study_name), None)
        if previous is not None:
            previous.close()
        _live[(cfg.storage, state.study_name)] = live
    return study, state


def _open(
    cfg: SweepConfig, fp: identity.Fingerprint, resume: bool | None, alone: bool
) -> tuple[optuna.Study, SweepState]:
    """``open_sweep`` under the creation lock; ``alone``: no other launcher lives on this storage."""
    storage = open_storage(
        cfg.storage, create=not resume, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period
    )
    studies = storage.get_all_studies()  # a server gone since connecting: storage_errors says so
    choice = _choose(studies, cfg, fp, resume)
    name, changed, details = choice.name, tuple(choice.changed), tuple(choice.details)
    state = SweepState(name, fp.parts, fp.digest, previous=choice.previous, changed=changed, details=details)
    summary = next((s for s in studies if s.study_name == name), None)
    attrs = dict(summary.user_attrs) if summary is not None else {}  # read once: each read is a query
    study = optuna.load_study(study_name=name, storage=storage) if summary is not None else None
    counted = 0
    if study is not None:
        if study.direction != StudyDirection.MINIMIZE:
            raise ConfigError(f"study '{name}' maximizes; it was not made by this pipeline, pick another name")
        trials = study.get_trials(deepcopy=False)
        if resume is False and trials:
            raise ConfigError(
                f"study '{name}' already has {len(trials)} trials in {mask_url(cfg.storage)}; "
                "pass --resume to continue it or --study-name to start another"
            )
        counted = sum(t.state in COUNTED for t in trials)  # clean_up (after the lock) fails RUNNING ones only
        rule = cfg.tune.stop_at_noise_floor
        floor = None if rule is None else noise_floor_stop(trials, dev_size(cfg), rule.patience, rule.factor)
        if counted >= cfg.n_trials or floor:  # nothing to run: no gate, no parent run, nothing written
            if floor and attrs.get("stop_cause") != floor:
                study.set_user_attr("stop_cause", floor)
            if alone and cfg.tracking and attrs.get("mlflow_parent_run_ids"):
                _close_dead_parents(cfg, name, keep=None)  # a launcher killed after its last trial
            return study, dataclasses.replace(state, counted_at_start=counted, complete=True, stop_cause=floor or "")
    path = sqlite_path(cfg.storage)
    if path is not None:  # a sweep will write: WAL mode until ``finish`` puts the file back at rest
        use_wal(path)
        _writing[(cfg.storage, name)] = storage
    new_attrs: dict[str, Any] = {"stop_cause": None} if attrs.get("stop_cause") else {}  # this sweep's, at its end
    if attrs.get("gradient_check", {}).get("fingerprint") != fp.digest:
        difference = gradient_gate(cfg.params, cfg.root)  # raises NumericalError before anything is created
        new_attrs["gradient_check"] = {"fingerprint": fp.digest, "relative_difference": difference}
    if study is None:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
        with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["dev_error"])  # what optuna-dashboard and Optuna's plots call the value
        # the intermediate values each trial reports, named where optuna-dashboard shows them
        new_attrs["intermediate_values"] = INTERMEDIATE_VALUES
        attrs = study.user_attrs
        if "fingerprint" not in attrs:  # else another launcher created it a moment ago
            new_attrs |= {"base_name": cfg.tune.study_name, "created": time.time(), "fingerprint": fp.digest}
            new_attrs |= {"fingerprint_parts": fp.parts, "fingerprint_settings": fp.settings}
    if choice.mixed:
        entry = {"digest": fp.digest, "parts": fp.parts, "changed": choice.changed, "at": time.time()}
        new_attrs["mixed_with"] = [*attrs.get("mixed_with", []), entry]
    for key, value in new_attrs.items():
        study.set_user_attr(key, value)
    parent = None
    if cfg.tracking:
        from pipeline import tracking

        tags = {"n_workers": cfg.n_workers, "n_trials_cap": cfg.n_trials, "storage": mask_url(cfg.storage)}
        tags |= {"optuna.base_name": cfg.tune.study_name, **fp.tags()}
        with locks.creation_lock(tracking.tracking_uri(), "the lock that serializes creating the MLflow store"):
            parent = tracking.prepare_study_run(name, cfg.params.tracking.experiment, tags)
        if alone:
            _close_dead_parents(cfg, name, keep=parent)
        study.set_user_attr("mlflow_parent_run_id", parent)
        study.set_user_attr("mlflow_parent_run_ids", [*attrs.get("mlflow_parent_run_ids", []), parent])
    started = time.time()
    return study, dataclasses.replace(
        state,
        parent_run_id=parent,
        started=started,
        deadline=None if cfg.tune.timeout is None else started + cfg.tune.timeout,
        counted_at_start=counted,
    )


def dev_size(cfg: SweepConfig) -> int:
    """The number of dev examples (the noise floor's n), read from the split's labels without loading them."""
    return int(np.load(Path(cfg.root) / split_file("y", "dev"), mmap_mode="r").shape[0])


def _close_dead_parents(cfg: SweepConfig, study_name: str, keep: str | None) -> None:
    """Close (KILLED) the parent runs that dead launchers left RUNNING in the study's experiment.

    Only called when no other launcher is alive on this storage (``locks.LiveLock``): a live
    sweep's parent run looks the same as a dead one's. A tracking server that is away is no
    reason to refuse a sweep (or a rerun with nothing to do): the next sweep closes them.
    """
    from pipeline import tracking

    with contextlib.suppress(tracking.TrackingUnreachable):
        tracking.close_dead_parent_runs(cfg.params.tracking.experiment or study_name, keep)


class Choice(NamedTuple):
    name: str  # the study to open
    previous: str | None  # the newest earlier study of the base, when a new one starts
    changed: list[str]  # the fingerprint parts that differ from that study's ([]: it has none)
    details: list[str]  # the readable settings that differ, "train.epochs: 10 -> 12"
    mixed: bool = False  # resuming a study of another fingerprint (--allow-mixed)


def _choose(studies: list[Any], cfg: SweepConfig, fp: identity.Fingerprint, resume: bool | None) -> Choice:
    """The study to use for ``fp``: its own, a new one, or (resume) the newest of the base.

    The studies of a base name are those with user attribute ``base_name`` equal to it, and a
    study named exactly the base (one made before studies had fingerprints, or a full name).
    A previous study without a fingerprint has no changed parts to name: ``[]``.
    """
    base = cfg.tune.study_name
    studies = [s for s in studies if s.user_attrs.get("base_name") == base or s.study_name == base]
    studies.sort(key=lambda s: s.user_attrs.get("created", 0.0))  # stable: storage order among equals
    same = [s for s in studies if s.user_attrs.get("fingerprint") == fp.digest]
    if same:
        return Choice(same[-1].study_name, None, [], [])
    newest = studies[-1] if studies else None
    old_parts = newest.user_attrs.get("fingerprint_parts") if newest else None
    changed, details = [], []
    if old_parts:
        changed = identity.changed(old_parts, fp.parts)
        details = identity.setting_changes(newest.user_attrs.get("fingerprint_settings", {}), fp.settings)
    if not resume:
        return Choice(f"{base}-{fp.digest}", newest.study_name if newest else None, changed, details)
    if newest is None:
        raise ConfigError(f"no study '{base}' in {mask_url(cfg.storage)}; drop --resume to create it")
    if not old_parts:
        raise ConfigError(
            f"study '{newest.study_name}' records no fingerprint (it predates them), so its trials cannot be "
            "checked against this data and code; start a new study with --study-name NEW (without --resume)"
        )
    strict = [p for p in changed if p in identity.STRICT_PARTS]
    if strict or not cfg.allow_mixed:
        ways = "--allow-mixed cannot mix data or code" if strict else "or pass --allow-mixed to continue it anyway"
        shown = f" ({'; '.join(details)})" if details else ""
        raise ConfigError(
            f"study '{newest.study_name}' has another fingerprint: {', '.join(changed)} changed{shown}; "
            f"start a new study with --study-name NEW (without --resume), {ways}"
        )
    return Choice(newest.study_name, None, changed, details, mixed=True)


def clean_up(
    study: optuna.Study, cfg: SweepConfig, *, mlflow: bool = True, now: Callable[[], datetime] = datetime.now
) -> None:
    """Fail the RUNNING trials of dead workers (retrying their parameters) and end their MLflow runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat older than the grace period
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A worker killed between creating a trial and its first heartbeat leaves a trial the
        # heartbeat check never sees; the objective tags "worker" first thing, so no tag = dead.
        silent = (now() - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        if "worker" not in t.user_attrs and silent > cfg.grace_period:
            with contextlib.suppress(ValueError):  # another worker got there first
                study.tell(t.number, state=TrialState.FAIL)
    if mlflow and cfg.tracking:
        from pipeline import tracking

        tracking.mark_orphans(study)


def run_sweep(
    cfg: SweepConfig, state: SweepState, callbacks: Sequence[TrialCallback] = (), workers: Workers | None = None
) -> list[int]:
    """Run the workers of an opened sweep (``open_sweep`` first); return their exit codes.

    With one worker the trials run in this process and ``callbacks`` see each finished trial;
    with several, worker processes (``spawn.run_workers``; ``workers``: the ones started before
    the sweep was opened, else started now) print their own trial lines. Ctrl-C
    (SIGTERM) reaches the running trials, each marked and its run KILLED, then propagates as
    KeyboardInterrupt (``Terminated``).
    """
    from pipeline.study.spawn import run_workers
    from pipeline.study.worker import run_worker

    if state.complete:
        return []
    if cfg.n_workers == 1:
        run_worker(cfg, state, 0, callbacks)
        return [0]
    return run_workers(cfg, state, workers)


def finish(study: optuna.Study, cfg: SweepConfig, state: SweepState, status: str = "FINISHED") -> list[str]:
    """End the sweep: fail what dead workers left, record the stop cause, close the parent run.

    The parent run gets the study's outcome, the sweep's effort per trial state and what pruning
    saved (``effort.study_effort``), and the tag ``sweep.stop_cause``. Returns the lines the command
    should print about tracking: a server that went away, runs written late or lost.
    """
    if state.complete:
        return []
    live = _live.pop((cfg.storage, state.study_name), None)
    notes: list[str] = []
    try:
        with storage_errors(cfg.storage):
            clean_up(study, cfg)
            trials = study.get_trials(deepcopy=False)
            cause = stop_cause(study, cfg, state, status, trials)
            study.set_user_attr("stop_cause", cause)
        if state.parent_run_id is not None:
            from pipeline import tracking
            from pipeline.study.summary import summarize

            effort = study_effort(trials, cfg.params.train.epochs)
            try:
                tracking.finish_study_run(
                    state.parent_run_id, summarize(study), status, metrics=effort, tags={"sweep.stop_cause": cause}
                )
            except tracking.TrackingUnreachable as e:
                notes.append(f"{e}: the parent run stays RUNNING; the next sweep of this study closes it")
            line = tracking.OUTBOX.summary()
            if line:
                notes.append(line)
    finally:
        if live is not None:
            live.close()
        _rest(cfg, state)
    return notes


def _rest(cfg: SweepConfig, state: SweepState) -> None:
    """The sqlite file back in rollback-journal mode (``storage.rest``); best effort, it is safe either way."""
    storage = _writing.pop((cfg.storage, state.study_name), None)
    path = sqlite_path(cfg.storage)
    if storage is not None and path is not None:
        with contextlib.suppress(sqlite3.Error, OSError):
            rest(storage, path)


def stop_cause(study: optuna.Study, cfg: SweepConfig, state: SweepState, status: str, trials: list[FrozenTrial]) -> str:
    """Why the sweep ended: the noise floor (set by a worker), an interrupt, a failure, the cap, the timeout."""
    floor = study.user_attrs.get("stop_cause")
    if floor:
        return str(floor)
    if status == "KILLED":
        return "interrupted"
    if status == "FAILED":
        return "failed"
    counted = sum(t.state in COUNTED for t in trials)
    if counted >= cfg.n_trials:
        return f"reached the cap of {cfg.n_trials} trials"
    if state.deadline is not None and time.time() >= state.deadline:
        return f"timeout: no trial starts after {cfg.tune.timeout:g} s"
    return "stopped"
