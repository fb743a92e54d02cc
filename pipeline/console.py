"""The terminal edge: what third-party libraries may print, and help text as plain text.

A command prints its own lines (one per trial, one naming what a stage wrote); MLflow, Optuna,
alembic, tqdm and matplotlib have their own ideas: artifact progress bars, INFO lines when a
store is created, warnings about small studies. ``quiet_third_party`` silences them in one place,
for the command's process and the worker processes it starts (through the environment);
``--verbose`` leaves them all on. Errors still show: raised ones reach ``cli.main``, and logged
ones (level ERROR and above) still print.

Stdlib only: ``cli`` imports it before any command, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from typing import NoReturn

# Read by the libraries themselves, so they also reach processes started later (sweep workers,
# the MLflow server of `pipeline ui`). A value the user set is kept.
QUIET_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # tqdm bars when log_model uploads/downloads artifacts
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # "Creating initial MLflow database tables...", signature inference
    "TQDM_DISABLE": "1",  # any other tqdm bar (tqdm reads TQDM_* as defaults since 4.66)
    "PYTHONWARNINGS": "ignore",  # child interpreters: library warnings (this process filters its own below)
}
# Loggers that configure themselves to print INFO or WARNING lines on their own handlers.
QUIET_LOGGERS = ("mlflow", "alembic", "optuna", "sqlalchemy", "matplotlib", "urllib3", "py.warnings")


@contextlib.contextmanager
def quiet_third_party(verbose: bool) -> Iterator[None]:
    """Silence third-party progress bars, INFO lines and warnings while the block runs, unless verbose.

    Everything is restored on exit (environment, logger levels, warning filters), so a command
    run in-process (the tests do) leaves the interpreter as it found it.
    """
    if verbose:
        yield
        return
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    saved_levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    root = logging.getLogger()
    # A root handler at ERROR: records of unconfigured loggers below ERROR go nowhere instead of to
    # logging's last-resort stderr handler, and Optuna's alembic env.py, which installs alembic's
    # INFO-level console logging ("INFO  [alembic.runtime.migration] ...") only when the root
    # logger has no handler, leaves logging alone.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    try:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        for name in QUIET_LOGGERS:  # already-imported libraries (mlflow reads its level at import)
            logging.getLogger(name).setLevel(logging.ERROR)
        root.addHandler(handler)
        with warnings.catch_warnings():
            # All of them: the project's code raises errors, not warnings, and matplotlib attributes
            # its warnings to the first caller outside matplotlib, often a pipeline module.
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(handler)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- help text ----------------------------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]+?)\s*(?:<[^>]*>)?`")  # :func:`x`, :class:`~a.B`
_LITERAL = re.compile(r"``(.+?)``")  # ``code``
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")  # `text <url>`_
_INTERPRETED = re.compile(r"`([^`]+)`_{0,2}")  # `text`, `target`_
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])")


def plain_text(rst: str) -> str:
    """Docstring text (reST inline markup) as a terminal shows it: ``x`` -> x, :func:`f` -> f, *a* -> a."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), rst)
    for pattern in (_LITERAL, _LINK, _INTERPRETED, _STRONG, _EMPHASIS):
        text = pattern.sub(r"\1", text)
    return text


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring as one plain line ("" when there is none)."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return plain_text(" ".join(paragraph.split()))


def exit_with(code: int) -> NoReturn:
    """End a command-line process with ``code``, without the collector's last passes over the heap.

    A process that imported mlflow holds about 180,000 objects in 2,000 modules; collecting them
    while the interpreter shuts down took 1.1 s of every stage and sweep worker that logs to
    MLflow (``python -c "import pipeline.tracking"``: 4.2-4.8 s, 3.3-3.6 s with this). The frozen
    objects are left to the operating system. atexit handlers still run (MLflow ends an active
    run there) and buffered output is flushed; only objects kept alive by reference cycles are not
    finalized, and every file and store the pipeline writes is closed before a command returns.
    """
    gc.freeze()
    raise SystemExit(code)
