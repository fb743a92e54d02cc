"""Fixtures every test folder may use. Kept light: this file is imported before any test is collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow_store import template_store


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest) -> Path:
    """A migrated, empty MLflow sqlite store to copy (``tests.mlflow_store.fresh_store``); never write to it."""
    return template_store(request.config.cache)
