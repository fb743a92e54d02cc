"""Fixtures every test folder may use. Kept light: this file is imported before any test is collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow_store import template_store


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite store to copy (``tests.mlflow_store.fresh_store``); never write to it."""
    return template_store(request.config, tmp_path_factory)


# Test files that import a slow-to-import library in the test process (mlflow ~5 s with its SQL
# store, scikit-learn ~3 s, scipy.stats ~1 s): each set runs on one xdist worker, so the other
# worker never pays the import. Found by running the fast suite with the library's import
# blocked. Every other file is a unit of its own, as with --dist loadfile: a file's module
# fixtures stay on one worker.
IMPORT_GROUPS = {
    "mlflow": ("tests/tracking/", "tests/stages/test_report.py", "tests/study/test_study.py", "tests/test_ui.py"),
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
