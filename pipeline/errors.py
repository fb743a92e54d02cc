"""Errors that reach a person: each carries the exit code the command line returns.

Exit codes: 2 bad params, 3 bad input data, 4 storage or tracking backend unavailable,
5 numerical failure (or a study with no finished trial), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the command line prints as one line."""

    exit_code = 1


class ConfigError(PipelineError, ValueError):
    """A params file or option that cannot be used."""

    exit_code = 2


class DataError(PipelineError, ValueError):
    """Input data that cannot be used: missing, corrupt, inconsistent."""

    exit_code = 3


class StorageError(PipelineError):
    """A study storage or tracking store that cannot be reached or read."""

    exit_code = 4


class NumericalError(PipelineError, ArithmeticError):
    """Training diverged, or a study ended with no finished trial."""

    exit_code = 5


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type's name): what fits in a one-line error."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
