"""A sweep's worker processes: start them, pass on their output, stop them together.

The processes start before the launcher opens the study (``Workers``, from ``pipeline sweep``
and the tune stage): their interpreter start and imports (mlflow's alone takes about 2 s) then
run beside the launcher's own (fingerprint, gradient check, opening the stores, the parent run)
instead of after them. Each waits for the sweep's configuration and state on its stdin; one
whose stdin closes without them exits 0 having done nothing (the study was complete, or
opening it failed).

Each worker (``python -m pipeline.study.worker``) gets the launcher's pid and stops once the
launcher is gone. Its own session keeps a terminal's Ctrl-C away from it: the launcher forwards
exactly one SIGINT (or SIGTERM) per worker, since a second would cut a worker's cleanup short. A
worker killed by a signal (negative code) does not fail the sweep: the heartbeat fails its trial
and the others retry it. A worker that fails with its one-line error (exit 2 to 5) stops the
others; the launcher raises that error once, with its exit code, instead of printing it per worker.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from pipeline.errors import ConfigError, DataError, NumericalError, PipelineError, StorageError
from pipeline.study.config import SweepConfig, SweepState, to_payload
from pipeline.study.signals import INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated

WORKER_ERROR = "error: worker "  # how a worker's one-line error starts (``worker.main``)
EXIT_ERRORS: dict[int, type[PipelineError]] = {2: ConfigError, 3: DataError, 4: StorageError, 5: NumericalError}
STOP_WAIT = 60  # seconds a stopped worker gets to mark its trial before it is killed


class Workers:
    """``n`` worker processes, started at once and given their sweep later (``run_workers``).

    Use as a context manager around opening the sweep: leaving the block, workers that never got
    a sweep are stopped and waited for, so none outlives a launcher that failed or had nothing to
    run. ``tracking``: the workers import ``pipeline.tracking`` while they wait.
    """

    def __init__(self, n: int, *, tracking: bool) -> None:
        command = [sys.executable, "-m", "pipeline.study.worker", "--parent", str(os.getpid())]
        command += ["--preload-tracking"] if tracking else []
        self.procs = [
            subprocess.Popen(
                [*command, "--index", str(i), "-"],
                start_new_session=True,
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(n)
        ]
        self.ended: queue.Queue[int] = queue.Queue()
        self.errors: dict[int, str] = {}
        self.given = False
        for i, proc in enumerate(self.procs):
            threading.Thread(target=_relay, args=(i, proc, self.errors, self.ended), daemon=True).start()

    def give(self, payload: str) -> None:
        """Send each worker the sweep's JSON (``config.to_payload``) and close its stdin."""
        self.given = True
        for proc in self.procs:
            stdin: IO[str] = proc.stdin  # type: ignore[assignment]
            with contextlib.suppress(BrokenPipeError):  # a worker that died starting: its exit code says why
                stdin.write(payload)
                stdin.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.given:
            return
        for proc in self.procs:  # they have touched nothing yet: no trial, no run to mark
            proc.kill()
        for proc in self.procs:
            proc.wait()


def run_workers(cfg: SweepConfig, state: SweepState, workers: Workers | None = None) -> list[int]:
    """Run the sweep in ``workers`` (started here when None) to their end; return their exit codes.

    See the module docstring for signals and failures.
    """
    workers = workers or Workers(cfg.n_workers, tracking=cfg.tracking)
    workers.give(to_payload(cfg, state))
    procs, ended, errors = workers.procs, workers.ended, workers.errors
    codes: dict[int, int] = {}
    try:
        while len(codes) < len(procs):
            i = ended.get()  # a signal's handler raises here, in the main thread
            codes[i] = procs[i].returncode
            if _failed(codes[i]):
                _signal(procs, signal.SIGTERM)  # the others would fail the same way, or run for nothing
    except KeyboardInterrupt as e:
        _signal(procs, signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    ordered = [codes[i] for i in range(len(procs))]
    failed = [i for i, c in enumerate(ordered) if _failed(c)]
    if failed:
        i = failed[0]
        message = errors.get(i, f"worker {i} exited with code {ordered[i]}; see its output above")
        raise EXIT_ERRORS.get(ordered[i], PipelineError)(message.removeprefix("error: "))
    if TERMINATED_EXIT in ordered:
        raise Terminated
    if INTERRUPTED_EXIT in ordered:
        raise KeyboardInterrupt
    return ordered


def _failed(code: int) -> bool:
    return code > 0 and code not in (INTERRUPTED_EXIT, TERMINATED_EXIT)


def _signal(procs: Sequence[subprocess.Popen], signum: int) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)


def _relay(i: int, proc: subprocess.Popen, errors: dict[int, str], ended: queue.Queue[int]) -> None:
    """Pass a worker's stderr on, keeping back its one-line error (the launcher raises it once)."""
    stream: IO[str] = proc.stderr  # type: ignore[assignment]
    for line in stream:
        if line.startswith(WORKER_ERROR) and i not in errors:
            errors[i] = line.rstrip("\n")
        else:
            sys.stderr.write(line)
            sys.stderr.flush()
    proc.wait()
    ended.put(i)
