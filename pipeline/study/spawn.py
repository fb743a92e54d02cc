"""A sweep's worker processes: start them, pass on their output, stop them together.

The workers are forked from one process (``Workers``), started before the launcher opens the
study (from ``pipeline sweep`` and the tune stage): its interpreter start and imports (mlflow's
alone takes about 2 s) run beside the launcher's own set-up (fingerprint, gradient check, the
stores, the parent run), once for any number of workers. It holds no connection, thread or
file of the study when it forks, so each worker opens its own, as a process started afresh
would. It waits for the sweep's configuration and state on its stdin (none: it exits 0 having
done nothing, when the study was complete or opening it failed), forks the workers, reports
each one's pid and exit code on a pipe, and exits once they all have.

Each worker stops once its parent is gone, and the forking process once the launcher is gone, so
a launcher killed even with SIGKILL leaves no worker training. The workers share the forking
process's session, which keeps a terminal's Ctrl-C away from them: the launcher forwards exactly
one SIGINT (or SIGTERM) to each, since a second would cut a worker's cleanup short. A worker
killed by a signal (negative code) does not fail the sweep: the heartbeat fails its trial and
the others retry it. A worker that fails with its one-line error (exit 2 to 5) stops the
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
import time
from typing import IO

from pipeline.errors import ConfigError, DataError, NumericalError, PipelineError, StorageError
from pipeline.study.config import SweepConfig, SweepState, to_payload
from pipeline.study.signals import INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated

WORKER_ERROR = "error: worker "  # how a worker's one-line error starts (``worker.serve``)
EXIT_ERRORS: dict[int, type[PipelineError]] = {2: ConfigError, 3: DataError, 4: StorageError, 5: NumericalError}
STOP_WAIT = 60  # seconds a stopped worker gets to mark its trial before it is killed


class WorkerProcess:
    """One forked worker as the launcher sees it: its pid once reported, its exit code once it ended."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.returncode: int | None = None
        self._ended = threading.Event()

    def send_signal(self, signum: int) -> None:
        if self.pid is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        return self.returncode  # type: ignore[return-value]

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()


class Workers:
    """``n`` workers, forked from one process started now and given their sweep later (``run_workers``).

    Use as a context manager around opening the sweep: leaving the block without a sweep given,
    the forking process is killed and waited for (it has forked nothing yet), so no process
    outlives a launcher that failed or had nothing to run. ``tracking``: it imports
    ``pipeline.tracking`` while it waits, so that every worker has it.
    """

    def __init__(self, n: int, *, tracking: bool) -> None:
        reports, write_end = os.pipe()
        command = [sys.executable, "-m", "pipeline.study.worker", "--parent", str(os.getpid())]
        command += ["--workers", str(n), "--report-fd", str(write_end)]
        command += ["--preload-tracking"] if tracking else []
        try:
            self.forker = subprocess.Popen(
                [*command, "-"],
                start_new_session=True,
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        self.procs = [WorkerProcess() for _ in range(n)]
        self.ended: queue.Queue[int] = queue.Queue()
        self.errors: dict[int, str] = {}
        self.given = False
        self._stop: int | None = None  # the signal sent to every worker, also to one reported later
        self._lock = threading.Lock()
        threading.Thread(target=self._relay, daemon=True).start()
        threading.Thread(target=self._read_reports, args=(reports,), daemon=True).start()

    def give(self, payload: str) -> None:
        """Send the sweep's JSON (``config.to_payload``): the workers are forked and start."""
        self.given = True
        stdin: IO[str] = self.forker.stdin  # type: ignore[assignment]
        with contextlib.suppress(BrokenPipeError):  # it died starting: the reports say so
            stdin.write(payload)
            stdin.close()

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every running worker, and to any whose pid is not reported yet once it is."""
        with self._lock:
            self._stop = signum
            for proc in self.procs:
                proc.send_signal(signum)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.given:  # nothing forked, nothing touched: no trial, no run to mark
            self.forker.kill()
        self.forker.wait()

    def _read_reports(self, fd: int) -> None:
        """``pid I PID`` and ``exit I CODE`` lines from the forking process; at its end, what is left."""
        with os.fdopen(fd) as stream:
            for line in stream:
                kind, index, value = line.split()
                proc = self.procs[int(index)]
                if kind == "pid":
                    with self._lock:
                        proc.pid = int(value)
                        if self._stop is not None:
                            proc.send_signal(self._stop)
                else:
                    proc.ended(int(value))
                    self.ended.put(int(index))
        code = self.forker.wait()
        for i, proc in enumerate(self.procs):
            if proc.returncode is not None:
                continue
            # Not reported: the forking process died first (killed: its workers stop as if their
            # launcher were gone; or it failed before forking, its output relayed above). Its code
            # stands for theirs, once they are gone: they are not this process's children.
            if proc.pid is not None:
                _wait_gone(proc.pid, STOP_WAIT)
            proc.ended(code)
            self.ended.put(i)

    def _relay(self) -> None:
        """Pass the workers' stderr on, keeping back each one's one-line error (the launcher raises it once)."""
        stream: IO[str] = self.forker.stderr  # type: ignore[assignment]
        for line in stream:
            if line.startswith(WORKER_ERROR):
                index = line[len(WORKER_ERROR) :].split(":", 1)[0]
                if index.isdigit():
                    self.errors.setdefault(int(index), line.rstrip("\n"))
                    continue
            sys.stderr.write(line)
            sys.stderr.flush()


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until process ``pid`` (not a child of this one) has exited, for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:  # a zombie has exited, whoever reaps it
                if f.read().rsplit(") ", 1)[1].startswith("Z"):
                    return
        except (ProcessLookupError, FileNotFoundError):
            return
        except OSError:  # no /proc: signal 0 alone says it is there
            pass
        time.sleep(0.05)


def run_workers(cfg: SweepConfig, state: SweepState, workers: Workers | None = None) -> list[int]:
    """Run the sweep in ``workers`` (started here when None) to their end; return their exit codes.

    See the module docstring for signals and failures.
    """
    if workers is None:
        with Workers(cfg.n_workers, tracking=cfg.tracking) as started:
            return run_workers(cfg, state, started)
    workers.give(to_payload(cfg, state))
    procs, ended, errors = workers.procs, workers.ended, workers.errors
    codes: dict[int, int] = {}
    try:
        while len(codes) < len(procs):
            i = ended.get()  # a signal's handler raises here, in the main thread
            codes[i] = procs[i].returncode
            if _failed(codes[i]):
                workers.signal_all(signal.SIGTERM)  # the others would fail the same way, or run for nothing
    except KeyboardInterrupt as e:
        workers.signal_all(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
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
