"""The launcher: open the sweep's study, clean up after dead workers, run the workers, finish.

``open_sweep`` runs once, before any worker starts, because workers that create a brand-new
storage schema (or MLflow store) at the same moment crash each other. It fingerprints the data,
settings and code (``identity``), picks the study of that fingerprint (``<base>-<digest>``),
checks backprop once before the study's first trial (``gate``), and opens the MLflow parent run
only when a trial will run. ``tune.n_trials`` is the total over all runs and workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import ConfigError, PipelineError, StorageError
from pipeline.study import identity
from pipeline.study.config import SweepConfig, SweepState, to_payload
from pipeline.study.gate import gradient_gate
from pipeline.study.storage import mask_url, open_storage

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # states that use up the trial cap
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def open_sweep(cfg: SweepConfig, *, resume: bool | None = None) -> tuple[optuna.Study, SweepState]:
    """Open (or create) the study of this fingerprint and, if a trial will run, its MLflow parent run.

    ``resume``: True continues the newest study of ``tune.study_name`` and refuses one whose
    fingerprint differs (unless ``cfg.allow_mixed``, for the settings parts); False requires a new
    or empty study; None (the tune stage) takes the study of this fingerprint, or starts one.
    """
    fp = identity.fingerprint(cfg.params, cfg.split_dir)  # also fails on missing data before creating anything
    storage = open_storage(
        cfg.storage, create=not resume, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period
    )
    studies = _all_studies(storage, cfg)
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
        clean_up(study, cfg)  # fails RUNNING trials only: the counted ones stay as they are
        counted = sum(t.state in COUNTED for t in trials)
        if counted >= cfg.n_trials:  # nothing to run: no gate, no parent run, nothing written
            return study, dataclasses.replace(state, counted_at_start=counted, complete=True)
    new_attrs = {}
    if attrs.get("gradient_check", {}).get("fingerprint") != fp.digest:
        difference = gradient_gate(cfg.params, cfg.root)  # raises NumericalError before anything is created
        new_attrs["gradient_check"] = {"fingerprint": fp.digest, "relative_difference": difference}
    if study is None:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
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
        parent = tracking.prepare_study_run(name, cfg.params.tracking.experiment, tags)
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


def _all_studies(storage: optuna.storages.BaseStorage, cfg: SweepConfig) -> list[Any]:
    try:
        return storage.get_all_studies()
    except Exception as e:  # sqlalchemy errors: the server went away after connecting
        raise StorageError(f"cannot read studies from {mask_url(cfg.storage)}: {type(e).__name__}") from None


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


def run_sweep(cfg: SweepConfig, state: SweepState, callbacks: Sequence[TrialCallback] = ()) -> list[int]:
    """Run the workers of an opened sweep (``open_sweep`` first); return their exit codes.

    With one worker the trials run in this process and ``callbacks`` see each finished trial;
    with several, each worker process prints its own trial lines. A worker killed by a signal
    (negative code) does not fail the sweep: the heartbeat fails its trial and the others retry
    it. Ctrl-C reaches the running trials (each is marked and its run KILLED), then propagates
    as KeyboardInterrupt.
    """
    from pipeline.study.worker import run_worker

    if state.complete:
        return []
    if cfg.n_workers == 1:
        run_worker(cfg, state, 0, callbacks)
        return [0]
    payload = to_payload(cfg, state)
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


def finish(study: optuna.Study, cfg: SweepConfig, state: SweepState, status: str = "FINISHED") -> None:
    """End the sweep: fail what dead workers left, close the parent run with the study's outcome."""
    if state.complete:
        return
    clean_up(study, cfg)
    if state.parent_run_id is not None:
        from pipeline import tracking

        tracking.finish_study_run(state.parent_run_id, study, status)
