"""The final network's files: ``<stem>.npz`` (weights) and ``<stem>.json`` (architecture, settings).

``pipeline.nn`` turns a network into bytes and back; this module puts those bytes on disk through
the one atomic writer, so a killed train stage leaves the previous model whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import nn
from pipeline.errors import DataError
from pipeline.io import atomic_write_bytes

__all__ = ["load_model", "save_model"]


def save_model(
    stem: str | Path, weights: nn.Weights, arch: nn.Architecture, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` (weights) and ``<stem>.json`` (architecture, extra) atomically; return both."""
    stem = Path(stem).with_suffix("")
    npz, meta = nn.model_to_bytes(weights, arch, extra)
    return atomic_write_bytes(stem.with_suffix(".npz"), npz), atomic_write_bytes(stem.with_suffix(".json"), meta)


def load_model(stem: str | Path) -> tuple[nn.Weights, nn.Architecture, dict[str, Any]]:
    """Read a model written by ``save_model``; a missing, foreign or damaged file is a DataError naming it."""
    stem = Path(stem).with_suffix("")
    npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
    try:
        blobs = meta.read_bytes(), npz.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{e.filename}: model file not found; run the train stage first") from None
    try:
        return nn.model_from_bytes(blobs[1], blobs[0], str(npz), str(meta))
    except nn.ModelFileError as e:
        raise DataError(str(e)) from None
