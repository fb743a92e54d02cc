"""Save and load a network without pickle: arrays in .npz, architecture and settings in .json."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.nn.network import Architecture, Weights

FORMAT = "pipeline-mlp"
VERSION = 1


class ModelFileError(ValueError):
    """A model file this project did not write, or one that is damaged."""


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    path: str | Path, weights: Weights, arch: Architecture, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (weights) and ``<path>.json`` (architecture, extra); return both paths."""
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
    document = {"format": FORMAT, "version": VERSION, "architecture": asdict(arch), "extra": extra or {}}
    _atomic_write(npz, lambda f: np.savez(f, **weights))
    _atomic_write(meta, lambda f: f.write(json.dumps(document, indent=2, sort_keys=True).encode()))
    return npz, meta


def load_model(path: str | Path) -> tuple[Weights, Architecture, dict[str, Any]]:
    """Read a model written by ``save_model``; raise ModelFileError naming the file otherwise."""
    stem = Path(path).with_suffix("")
    npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
    try:
        document = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{meta}: model file not found; run the train stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{meta}: not a model description (invalid JSON); retrain the model") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{meta}: not a {FORMAT} file; it was not written by this project")
    if document.get("version") != VERSION:
        raise ModelFileError(f"{meta}: model format version {document.get('version')} is not {VERSION}; retrain")
    try:
        a = document["architecture"]
        arch = Architecture(tuple(a["layer_dims"]), a["hidden_activation"], a["init"], a["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{meta}: invalid architecture ({e}); retrain the model") from None
    try:
        with np.load(npz, allow_pickle=False) as data:
            weights = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ModelFileError(f"{npz}: weights file not found; run the train stage first") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(
            f"{npz}: unreadable or truncated weights ({type(e).__name__}); retrain the model"
        ) from None
    for l in range(1, arch.n_layers + 1):
        expected = {f"W{l}": (arch.layer_dims[l], arch.layer_dims[l - 1]), f"b{l}": (arch.layer_dims[l], 1)}
        for name, shape in expected.items():
            if name not in weights or weights[name].shape != shape:
                raise ModelFileError(f"{npz}: {name} missing or not of shape {shape}; the files do not match")
    if len(weights) != 2 * arch.n_layers:
        raise ModelFileError(f"{npz}: unexpected arrays {sorted(weights)}; the files do not match")
    return weights, arch, document.get("extra", {})
