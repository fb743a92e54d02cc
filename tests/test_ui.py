"""The terminal: plain-text help, no third-party noise."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

import pytest

from pipeline import cli, console

REPO = Path(__file__).resolve().parents[1]
REST_MARKUP = re.compile(r"``|:[a-z]+:`|`_\b|\*\*\w")


# --- help as plain text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rst", "plain"),
    [
        ("Stage ``train``: fit", "Stage train: fit"),
        ("see :func:`pipeline.nn.fit` and :class:`~pipeline.config.Params`", "see pipeline.nn.fit and Params"),
        ("the `MLflow docs <https://mlflow.org>`_ and `target`_", "the MLflow docs and target"),
        ("**not** *this* one, but 2 * 3 * 4 stays", "not this one, but 2 * 3 * 4 stays"),
    ],
)
def test_plain_text_strips_rest_inline_markup(rst: str, plain: str) -> None:
    assert console.plain_text(rst) == plain


def test_top_level_help_is_plain_text() -> None:
    assert "``" in cli.__doc__  # the docstring it comes from is reST
    text = cli.build_parser().format_help()
    assert "python -m pipeline <command>" in text and not REST_MARKUP.search(text), text
    assert "--verbose" in text


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_help_is_plain_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: pipeline {command}" in text and not REST_MARKUP.search(text), text


# --- third-party output ---------------------------------------------------------------------------


def test_quiet_third_party_silences_libraries_only_and_restores_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in console.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")  # a user's own choice is kept
    mlflow_log = logging.getLogger("mlflow.store.db.utils")
    before = mlflow_log.getEffectiveLevel()
    handlers = list(logging.getLogger().handlers)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with console.quiet_third_party(verbose=False):
            assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
            assert os.environ["PYTHONWARNINGS"] == "ignore" and os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"
            assert not mlflow_log.isEnabledFor(logging.WARNING)
            warnings.warn_explicit("few trials", UserWarning, "evaluator.py", 353, module="optuna.importance")
            warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="pipeline.report.x")
        warnings.warn_explicit("after", UserWarning, "evaluator.py", 354, module="optuna.importance")
    assert [str(w.message) for w in shown] == ["ours", "after"]
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ and "PYTHONWARNINGS" not in os.environ
    assert mlflow_log.getEffectiveLevel() == before and logging.getLogger().handlers == handlers


def test_verbose_leaves_third_party_output_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with console.quiet_third_party(verbose=True):
            assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
            warnings.warn_explicit("few trials", UserWarning, "evaluator.py", 353, module="optuna.importance")
    assert [str(w.message) for w in shown] == ["few trials"]
