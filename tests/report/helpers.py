"""Report contexts from constructed numbers: no study, no training, no files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.report.build import Report, build_report
from pipeline.report.context import build_context
from pipeline.report.inputs import ReportInputs


def inputs(
    train: tuple[int, int], dev: tuple[int, int], source: str = "folder", root: Path = Path("/nonexistent")
) -> ReportInputs:
    """What the stages would have written for ``(errors, n)`` on train and dev, two classes."""
    metrics = {"train_error": train[0] / train[1], "n_train": train[1], "dev_error": dev[0] / dev[1], "n_dev": dev[1]}
    sizes = {"train": train[1], "dev": dev[1], "test": dev[1]}
    balance = {k: {0: n // 2, 1: n - n // 2} for k, n in sizes.items()}
    meta = {"source": source, "classes": ["cat", "other"], "image_shape": [8, 8, 3]}
    return ReportInputs(root=root, meta=meta, metrics=metrics, sizes=sizes, balance=balance, n_x=192)


def report(
    train: tuple[int, int], dev: tuple[int, int], params: Params, previous: dict[str, Any] | None = None, **kw: Any
) -> Report:
    return build_report(build_context(inputs(train, dev, **kw), params, previous=previous))
