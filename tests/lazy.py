"""Modules imported on first use, for test files: ``tracking = lazy("pipeline.tracking")``.

Every xdist worker imports every test module while collecting, so a module-level ``import mlflow``
costs each worker about 2 s (pandas and scikit-learn more) even when the tests that need it run on
the other worker. ``lazy`` returns a stand-in that imports the module when a test first reads (or
monkeypatches) one of its public attributes.

Names starting with ``_`` are not forwarded: collection probes every module-level object
(``__wrapped__``, ``_mock_name``, ...) and must not trigger the import. The stand-in has no
``__dict__`` of its own (``__slots__``), so ``monkeypatch.setattr`` saves and restores the real
module's attribute instead of deleting it on undo.
"""

from __future__ import annotations

import importlib
from typing import Any


class _Lazy:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:  # only called for what the stand-in itself lacks
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(importlib.import_module(self._name), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on the first public attribute a test reads."""
    return _Lazy(name)
