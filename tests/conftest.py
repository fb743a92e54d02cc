"""Fixtures every test folder may use. Kept light: this file is imported before any test is collected."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mlflow_store import template_store


@pytest.fixture(autouse=True, scope="session")
def _optuna_migrations_read_once() -> Iterator[None]:
    """One Alembic script directory for every Optuna storage the tests open in this process.

    Optuna reads its 30 migration scripts again for every storage it creates or checks (0.2 s
    of a new sqlite study's 0.25 s, ~0.06 s of an open), and the study tests open hundreds. The
    scripts are the installed package's files, the same for every storage, so one reading gives
    the same head and history. The pipeline itself is unchanged: it opens a storage a few times
    per sweep.
    """
    from optuna.storages._rdb import storage as rdb

    manager = getattr(rdb, "_VersionManager", None)
    original = getattr(manager, "_create_alembic_script", None)
    if original is None:  # Optuna reorganized its internals: tests run as they are, only slower
        yield
        return
    scripts: list[object] = []  # the first storage's; a script directory does not use the URL

    def create_alembic_script(self: object) -> object:
        if not scripts:
            scripts.append(original(self))
        return scripts[0]

    manager._create_alembic_script = create_alembic_script
    try:
        yield
    finally:
        manager._create_alembic_script = original


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite store to copy (``tests.mlflow_store.fresh_store``); never write to it."""
    return template_store(request.config, tmp_path_factory)


def pytest_configure(config: pytest.Config) -> None:
    _cache_bytecode(config)
    _share_the_cores(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    gc.freeze()  # the process is ending: no last collection over mlflow's heap (pipeline.console.exit_with)


def _share_the_cores(config: pytest.Config) -> None:
    """Give each xdist worker its share of the cores for BLAS, unless the user set the variable.

    OpenBLAS starts one thread per core in every process, and its idle threads spin: two workers
    on 2 cores with 2 threads each spent about 6 s of CPU per worker spinning (the fast suite took
    44 s of wall, not 37). Set in the controller before the workers start, so they and the
    processes the tests start inherit it; a test that needs more threads sets them itself
    (threadpoolctl), as the pipeline does per network.
    """
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1 and "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def _cache_bytecode(config: pytest.Config) -> None:
    """Let the test processes cache compiled modules, as Python does by default.

    With PYTHONDONTWRITEBYTECODE set (as on this project's machines) every xdist worker and every
    subprocess a test starts compiled the pipeline's modules, and pytest rewrote each test file's
    asserts, from scratch: about 3.3 s of CPU per worker. The ``__pycache__`` folders written
    beside the sources are ignored by git (.gitignore) and by DVC (.dvcignore), so no stage looks
    changed; the virtual environment's own compiled files are used as they are. Set here, before
    the test files are imported, and in the environment, which the workers and subprocesses
    inherit. ``-p no:cacheprovider`` leaves everything as it is.
    """
    if getattr(config, "cache", None) is None or not sys.dont_write_bytecode:
        return
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


# A valid 1x1 PNG: what every report figure becomes under ``blank_figures``.
BLANK_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082"
)


@pytest.fixture
def blank_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report figure is BLANK_PNG: for tests of a page's text and links, not of its plots.

    Drawing the figures of one report takes about a second of matplotlib; tests that read the
    figures (tests/report) draw them for real.
    """
    from pipeline.report import figures

    for name in dir(figures):
        if name.endswith("_figure"):
            monkeypatch.setattr(figures, name, lambda *args, **kwargs: BLANK_PNG)


# Test files that import a slow-to-import library in the test process (mlflow ~5 s with its SQL
# store, scikit-learn ~3 s, scipy.stats ~1 s): each set runs on one xdist worker, so the other
# worker never pays the import. Found by running the fast suite with the library's import
# blocked. Every other file is a unit of its own, as with --dist loadfile: a file's module
# fixtures stay on one worker.
IMPORT_GROUPS = {
    "mlflow": (
        "tests/tracking/",
        "tests/stages/test_report.py",
        "tests/study/test_blas_threads.py",
        "tests/test_ui.py",
    ),
    "scipy": (  # scikit-learn and scipy.stats
        "tests/test_estimator.py",
        "tests/nn/test_network.py",
        "tests/data/test_sources.py",
        "tests/report/test_stats.py",
        "tests/report/test_selection.py",
    ),
}


def scheduling_unit(nodeid: str) -> str:
    """The unit a test is scheduled with: its import group, else its file."""
    path = nodeid.split("::", 1)[0]
    return next((group for group, prefixes in IMPORT_GROUPS.items() if path.startswith(prefixes)), path)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """--dist loadfile, with the import groups above as units (pytest-xdist's own hook)."""
    if config.getoption("dist") != "loadfile":
        return None  # another mode asked for on the command line: xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class ImportGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    return ImportGroupScheduling(config, log)
