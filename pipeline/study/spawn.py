"""A sweep's worker processes: start them, pass on their output, stop them together.

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


def run_workers(cfg: SweepConfig, state: SweepState) -> list[int]:
    """Run ``cfg.n_workers`` worker processes to their end; return their exit codes (see the module docstring)."""
    payload = to_payload(cfg, state)
    command = [sys.executable, "-m", "pipeline.study.worker", "--parent", str(os.getpid())]
    procs = [
        subprocess.Popen(
            [*command, "--index", str(i), payload], start_new_session=True, stderr=subprocess.PIPE, text=True
        )
        for i in range(cfg.n_workers)
    ]
    ended: queue.Queue[int] = queue.Queue()
    errors: dict[int, str] = {}
    for i, proc in enumerate(procs):
        threading.Thread(target=_relay, args=(i, proc, errors, ended), daemon=True).start()
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
