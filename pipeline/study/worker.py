"""A sweep's worker: the trial loop, and its processes (``python -m pipeline.study.worker``).

Each worker loops: take the claim lock, fail the trials of dead workers, count the trials, and
start one more trial only while the study is under its cap. COMPLETE and PRUNED trials count (a
diverged trial is PRUNED); FAIL trials do not: a trial lost with its worker is retried with the
same parameters (and the same random stream), an interrupted one is replaced.

With ``tune.stop_at_noise_floor`` set, each worker also checks the noise-floor rule before it
claims a trial (``noise_floor``), and the first to see it hold records it as the study's
``stop_cause``. A storage failure ends the worker with a one-line ``StorageError`` (exit 4).

The launcher (``pipeline sweep`` / ``pipeline tune`` with several workers) starts one process,
``python -m pipeline.study.worker --workers N --report-fd FD -``, before it opens the study; once
given the sweep on stdin it forks the N workers (``fork_workers``, ``spawn.Workers``). A worker
whose parent is gone (the forking process, which dies with the launcher, even a SIGKILLed one)
stops at its next epoch like on SIGTERM, its trial marked and its run KILLED, and closes the
launcher's parent run KILLED. ``main`` is a command-line edge, so it prints one line per trial.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NoReturn

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import ConfigError, PipelineError
from pipeline.study import identity
from pipeline.study.config import PRUNERS, SweepConfig, SweepState, from_payload, make_sampler
from pipeline.study.launch import COUNTED, TrialCallback, clean_up
from pipeline.study.locks import ClaimLock
from pipeline.study.noise_floor import noise_floor_stop
from pipeline.study.objective import Objective, TrialData
from pipeline.study.signals import DeferredInterrupt, die_with_parent, exit_code, sigterm_as_interrupt
from pipeline.study.storage import open_storage, preload, storage_errors, sync_trial_end


def run_worker(
    cfg: SweepConfig,
    state: SweepState,
    worker_index: int = 0,
    callbacks: Sequence[TrialCallback] = (),
    parent: int | None = None,
) -> int:
    """Run trials until the study reaches its cap, its noise floor or the deadline; return how many ran here.

    ``parent``: the launcher's pid, for a worker process (it stops once the launcher is gone).
    """
    with storage_errors(cfg.storage), _quiet_storage_threads():
        try:
            return _run_worker(cfg, state, worker_index, callbacks, parent)
        finally:
            if state.parent_run_id is not None:  # runs that waited for a tracking server: now or never
                from pipeline import tracking

                with contextlib.suppress(PipelineError):  # what is lost is counted, and said by the command
                    tracking.flush_outbox()


def _run_worker(
    cfg: SweepConfig, state: SweepState, worker_index: int, callbacks: Sequence[TrialCallback], parent: int | None
) -> int:
    data = TrialData.read(cfg.root)
    on_stale = _mark_orphans if state.parent_run_id is not None else None
    storage = open_storage(  # the launcher checked the schema version
        cfg.storage,
        check_schema=False,
        heartbeat_interval=cfg.heartbeat_interval,
        grace_period=cfg.grace_period,
        on_stale=on_stale,
    )
    try:
        return _run_trials(cfg, state, storage, data, worker_index, callbacks, parent)
    finally:
        storage.engine.dispose()  # closed here, so that the launcher can put a sqlite file back at rest


def _run_trials(
    cfg: SweepConfig,
    state: SweepState,
    storage: optuna.storages.RDBStorage,
    data: TrialData,
    worker_index: int,
    callbacks: Sequence[TrialCallback],
    parent: int | None,
) -> int:
    params = cfg.params
    study = optuna.load_study(study_name=state.study_name, storage=storage, pruner=PRUNERS[cfg.tune.pruner](params))
    # The launcher hashed this machine's data and code; a worker never scores another study's.
    own, digest = state.fingerprint, state.digest
    if not own:  # started without a launcher's state: hash this machine's data and code
        fp = identity.fingerprint(params, cfg.split_dir)
        own, digest = fp.parts, fp.digest
    theirs = study.user_attrs.get("fingerprint_parts", {})
    differ = [p for p in identity.changed(theirs, own) if p in identity.STRICT_PARTS]
    if differ:
        raise ConfigError(
            f"study '{state.study_name}' was scored with other {', '.join(differ)} than this worker has; "
            "run the same checkout and data as the study, or start a new study with --study-name NEW"
        )
    study.sampler = make_sampler(params, worker_index, len(study.get_trials(deepcopy=False)))
    lock = ClaimLock(cfg.storage, state.study_name)
    interrupt = DeferredInterrupt(parent)
    rule, n_dev = params.tune.stop_at_noise_floor, len(data.y_dev)

    def trial_started() -> None:
        lock.release()  # the trial exists and counts as RUNNING: other workers may claim now
        interrupt.check()  # a Ctrl-C during the claim lands here, where the objective marks the trial

    tags = identity.run_tags(digest, own)
    objective = Objective(
        params,
        data,
        state.parent_run_id,
        on_start=trial_started,
        checkpoint=interrupt.check,
        threads=cfg.blas_threads,
        tags=tags,
        workers=cfg.n_workers,
    )
    all_callbacks = [MaxTrialsCallback(cfg.n_trials, states=COUNTED), *callbacks]
    # Only a worker with nothing left to claim polls, while the others finish the study's last trials:
    # often, so that the sweep ends soon after its last trial (a 1 s poll kept it 0.5 s on average).
    poll = min(0.2, cfg.heartbeat_interval / 2)
    ran = 0
    with interrupt:
        try:
            while state.deadline is None or time.time() < state.deadline:
                interrupt.check()
                lock.acquire()
                try:
                    clean_up(study, cfg, mlflow=False)  # the heartbeat callback ends orphaned runs
                    trials = study.get_trials(deepcopy=False)
                    if rule is not None and _at_noise_floor(study, trials, n_dev, rule.patience, rule.factor):
                        break
                    states = Counter(t.state for t in trials)
                    if sum(states[s] for s in (*COUNTED, TrialState.RUNNING)) < cfg.n_trials:
                        ran += 1
                        try:
                            _run_one(study, objective, all_callbacks)  # releases the lock once its trial exists
                        except BaseException:  # the objective marked its trial: sync that, but the error in flight wins
                            with contextlib.suppress(OSError):
                                sync_trial_end(cfg.storage)
                            raise
                        sync_trial_end(cfg.storage)  # its end on disk: commits during a trial do not sync
                        continue
                finally:
                    lock.release()
                if states[TrialState.RUNNING] == 0:
                    break
                # Full, but others are still running: one may die and need its trial retried here.
                time.sleep(poll)
        except KeyboardInterrupt:
            if interrupt.parent_gone and state.parent_run_id is not None:
                _close_orphaned_parent(study, state.parent_run_id)
            raise
        finally:
            lock.close()
    return ran


def _at_noise_floor(study: optuna.Study, trials: list[FrozenTrial], n_dev: int, patience: int, factor: float) -> bool:
    """The noise-floor rule holds: record it as the study's stop cause (once) and say so."""
    cause = noise_floor_stop(trials, n_dev, patience, factor)
    if cause is None:
        return False
    if study.user_attrs.get("stop_cause") != cause:
        study.set_user_attr("stop_cause", cause)
    return True


def _close_orphaned_parent(study: optuna.Study, parent_run_id: str) -> None:
    """The launcher is gone: end its parent run KILLED (the first of its workers to get here does)."""
    from pipeline import tracking
    from pipeline.study.summary import summarize

    with contextlib.suppress(PipelineError):  # best effort: the next sweep closes it otherwise
        if tracking.run_status(parent_run_id) == "RUNNING":
            tracking.finish_study_run(
                parent_run_id, summarize(study), "KILLED", tags={"sweep.stop_cause": "launcher gone"}
            )


def _run_one(study: optuna.Study, objective: Objective, callbacks: list[TrialCallback]) -> None:
    try:
        study.optimize(objective, n_trials=1, callbacks=callbacks)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # the heartbeat check of another worker failed this (slow) trial and retries it
    except ValueError as e:
        if not str(e).startswith("Cannot tell a"):  # same cause, seen when the trial ends
            raise


def _mark_orphans(study: optuna.Study, trial: FrozenTrial) -> None:
    from pipeline import tracking

    tracking.mark_orphans(study)


def main(argv: list[str] | None = None) -> int:
    import pipeline.study.sweep  # serve's terminal lines, imported before any fork

    parser = argparse.ArgumentParser(prog="pipeline.study.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="worker number (seeds its own sampler stream)")
    parser.add_argument("--parent", type=int, help="the launcher's pid: stop once it is gone")
    parser.add_argument(
        "payload", help="the sweep's configuration and state as JSON, written by the launcher; -: read it from stdin"
    )
    parser.add_argument(
        "--preload-tracking", action="store_true", help="import the tracking code before reading the payload"
    )
    parser.add_argument(
        "--workers", type=int, help="fork this many workers (numbered from 0) instead of being one (spawn.Workers)"
    )
    parser.add_argument("--report-fd", type=int, help="with --workers: the pipe for their pids and exit codes")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our trial lines replace Optuna's (and Ctrl-C tracebacks)
    try:
        if args.workers is not None:  # the forking process: what each worker would import, once
            preload()
        if args.preload_tracking:
            import pipeline.tracking  # about 2 s: done while the launcher opens the sweep

            pipeline.tracking.preload()
        payload = sys.stdin.read() if args.payload == "-" else args.payload
    except KeyboardInterrupt as e:
        return exit_code(e)
    if not payload:
        return 0  # the launcher had no sweep to give (complete, or opening it failed): nothing was touched
    if args.workers is None:
        return serve(args.index, payload, args.parent)
    return fork_workers(args.workers, payload, args.report_fd)


def serve(index: int, payload: str, parent: int | None) -> int:
    """Be worker ``index`` of the sweep in ``payload``; return the exit code (a stop by signal: 130 or 143)."""
    from pipeline.study.sweep import TrialPrinter, watch_tracking  # the terminal lines live at the command-line edge

    prefix = f"w{index} "
    try:
        # SIGTERM (a scheduler's stop, the launcher's death) ends the running trial like Ctrl-C. Third-party
        # output is already quiet: the launcher's environment (pipeline.console.QUIET_ENV) reaches this process.
        with sigterm_as_interrupt():
            cfg, state = from_payload(payload)
            watch_tracking(cfg, prefix)
            run_worker(cfg, state, index, [TrialPrinter(cfg, state, prefix)], parent=parent)
    except KeyboardInterrupt as e:
        return exit_code(e)
    except PipelineError as e:
        print(f"error: worker {index}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0


def fork_workers(n: int, payload: str, report_fd: int) -> int:
    """Fork ``n`` workers that ``serve`` the sweep; report ``pid I PID`` and ``exit I CODE`` lines; wait for all.

    Forked after every import and before any connection is opened: each worker starts with the
    modules loaded (no interpreter start, no 2 s of imports) and opens its own storage and store.
    Ctrl-C is ignored here: the launcher signals each worker itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    report = os.fdopen(report_fd, "w", buffering=1)
    gc.freeze()  # the imported modules' objects stay in pages shared with the workers
    sys.stdout.flush()
    sys.stderr.flush()
    index_of: dict[int, int] = {}
    for index in range(n):
        pid = os.fork()
        if pid == 0:
            _be_worker(index, payload)  # never returns
        index_of[pid] = index
        report.write(f"pid {index} {pid}\n")
    while index_of:
        pid, status = os.wait()
        index = index_of.pop(pid, None)
        if index is not None:
            report.write(f"exit {index} {os.waitstatus_to_exitcode(status)}\n")
    report.close()
    return 0


def _be_worker(index: int, payload: str) -> NoReturn:
    """The forked child: ``serve``, then leave without running the forking process's exit handlers."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        parent = os.getppid()
        die_with_parent(parent)  # the forking process; it dies with the launcher
        code = serve(index, payload, parent)
    except KeyboardInterrupt as e:  # a signal before serve's own handlers
        code = exit_code(e)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@contextlib.contextmanager
def _quiet_storage_threads() -> Iterator[None]:
    """Keep a storage failure in Optuna's heartbeat thread from printing a traceback.

    The heartbeat thread writes to the same storage as the trial: when the disk is full or the
    server gone, it dies with the error the trial is about to raise as one line. Other threads'
    errors print as before.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        kind = args.exc_type
        storage = issubclass(kind, optuna.exceptions.StorageInternalError | OSError) or kind.__module__.startswith(
            ("sqlalchemy", "psycopg2", "sqlite3")
        )
        if not storage:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


if __name__ == "__main__":
    from pipeline.console import exit_with

    exit_with(main())
