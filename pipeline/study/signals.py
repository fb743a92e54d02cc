"""How a sweep stops on a signal: Ctrl-C and SIGTERM alike, and a worker whose launcher is gone.

SIGINT raises ``KeyboardInterrupt``; SIGTERM raises ``Terminated``, a subclass, so every path
that cleans up after Ctrl-C (the trial marked FAIL, its MLflow run KILLED, the parent run KILLED)
runs for SIGTERM too, and only the exit code differs: 130 for SIGINT, ``TERMINATED_EXIT`` (143,
128 + SIGTERM, what schedulers expect of a process they stopped) for SIGTERM.

A worker never outlives its launcher: on Linux it asks the kernel for a SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), and everywhere it compares ``os.getppid()`` with the
launcher's pid at each check, so a launcher killed with SIGKILL leaves no training orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

INTERRUPTED_EXIT = 130  # 128 + SIGINT
TERMINATED_EXIT = 143  # 128 + SIGTERM
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM (or the launcher's death), raised where Ctrl-C raises KeyboardInterrupt."""


def exit_code(interrupt: BaseException) -> int:
    """The documented exit code of a stop by signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return TERMINATED_EXIT if isinstance(interrupt, Terminated) else INTERRUPTED_EXIT


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (main thread only), SIGTERM raises ``Terminated`` like Ctrl-C does KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (elsewhere: rely on ``parent_gone``)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died before prctl: then no signal will come, so look once now.
    if parent_gone(parent):
        os.kill(os.getpid(), signal.SIGTERM)


def parent_gone(parent: int | None) -> bool:
    """True when ``parent`` (the launcher's pid) is no longer this process's parent."""
    return parent is not None and os.getppid() != parent


class DeferredInterrupt:
    """Ctrl-C and SIGTERM as a flag that the worker turns into an interrupt at safe points.

    A KeyboardInterrupt raised in the middle of a storage write leaves that connection's
    transaction open: on sqlite the heartbeat thread then waits for the lock while the main
    thread waits for the heartbeat thread. So the first signal only records itself, checked
    (``check``) before each trial and each epoch; a second one interrupts at once. ``parent``
    is the launcher's pid: once it is gone, ``check`` stops like SIGTERM.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, parent: int | None = None) -> None:
        self.requested: type[KeyboardInterrupt] | None = None
        self.parent = parent
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if self.requested is not None:
            if kind is Terminated and self.requested is Terminated and self.parent_gone:
                return  # Linux sends the parent-death signal once per thread: that is one stop, not two
            raise kind
        self.requested = kind

    @property
    def pending(self) -> bool:
        """A stop was asked for (or the launcher is gone), to be acted on at the next ``check``."""
        if self.requested is None and parent_gone(self.parent):
            self.requested = Terminated
        return self.requested is not None

    @property
    def parent_gone(self) -> bool:
        """The stop came from the launcher's death."""
        return parent_gone(self.parent)

    def check(self) -> None:
        if self.pending:
            raise self.requested  # type: ignore[misc]
