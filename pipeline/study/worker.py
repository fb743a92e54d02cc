"""A sweep's worker: the trial loop, and its process ``python -m pipeline.study.worker --index I '<JSON>'``.

Each worker loops: take the claim lock, fail the trials of dead workers, count the trials, and
start one more trial only while the study is under its cap. COMPLETE and PRUNED trials count (a
diverged trial is PRUNED); FAIL trials do not: a trial lost with its worker is retried with the
same parameters (and the same random stream), an interrupted one is replaced.

The launcher (``pipeline sweep`` / ``pipeline tune`` with several workers) starts the processes
after it opened the study; ``main`` is a command-line edge, so it prints one line per trial.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import ConfigError, PipelineError
from pipeline.study import identity
from pipeline.study.config import PRUNERS, SweepConfig, SweepState, from_payload, make_sampler
from pipeline.study.launch import COUNTED, TrialCallback, clean_up
from pipeline.study.objective import Objective, TrialData
from pipeline.study.storage import ClaimLock, open_storage


def run_worker(
    cfg: SweepConfig, state: SweepState, worker_index: int = 0, callbacks: Sequence[TrialCallback] = ()
) -> int:
    """Run trials until the study reaches its cap or the deadline passes; return how many ran here."""
    params = cfg.params
    data = TrialData.read(cfg.root)
    on_stale = _mark_orphans if state.parent_run_id is not None else None
    storage = open_storage(  # the launcher checked the schema version
        cfg.storage,
        check_schema=False,
        heartbeat_interval=cfg.heartbeat_interval,
        grace_period=cfg.grace_period,
        on_stale=on_stale,
    )
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
    interrupt = DeferredInterrupt()

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
    )
    all_callbacks = [MaxTrialsCallback(cfg.n_trials, states=COUNTED), *callbacks]
    poll = min(1.0, cfg.heartbeat_interval / 2)
    ran = 0
    with interrupt:
        try:
            while state.deadline is None or time.time() < state.deadline:
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


def main(argv: list[str] | None = None) -> int:
    from pipeline.study.sweep import TrialPrinter  # the terminal line lives at the command-line edge

    parser = argparse.ArgumentParser(prog="pipeline.study.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="worker number (seeds its own sampler stream)")
    parser.add_argument("payload", help="the sweep's configuration and state as JSON, written by the launcher")
    args = parser.parse_args(argv)
    # SIGTERM (a scheduler's stop) ends the running trial like Ctrl-C: marked, run KILLED.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our trial lines replace Optuna's (and Ctrl-C tracebacks)
    try:
        cfg, state = from_payload(args.payload)
        run_worker(cfg, state, args.index, [TrialPrinter(cfg, state, f"w{args.index} ")])
    except KeyboardInterrupt:
        return 130
    except PipelineError as e:
        print(f"error: worker {args.index}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
