"""Where the data stages keep their files (paths relative to the repository root), and readers for them.

Arrays are rows on disk: ``X`` is (m, n_x) float32 C-ordered ``.npy``, so ``X.T`` is the
(n_x, m) view ``pipeline.nn`` takes and a mini-batch of columns is one contiguous slice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.normalize import Normalizer
from pipeline.errors import DataError
from pipeline.io import load_npy, read_json
from pipeline.paths import PREPARED_DIR, SPLIT_DIR

__all__ = [
    "load_normalizer",
    "load_origin",
    "load_prepared",
    "load_split",
    "split_digest",
]


def load_prepared(root: str | Path = ".") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Return the prepare stage's raw rows X (m, n_x) (memory-mapped), labels y (m,) and meta.json."""
    d = Path(root) / PREPARED_DIR
    X, y, meta = load_npy(d / "X.npy"), load_npy(d / "y.npy", mmap=False), read_json(d / "meta.json")
    _check_pair(X, y, d / "X.npy")
    return X, y, meta


def load_origin(root: str | Path = ".") -> np.ndarray | None:
    """Which source each prepared row came from (0 primary, 1 ``data.target``), or None without a target."""
    path = Path(root) / PREPARED_DIR / "origin.npy"
    return load_npy(path, mmap=False) if path.exists() else None


def load_split(name: str, root: str | Path = ".", mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return one normalized split as rows X (m, n_x) float32 and labels y (m,) int64."""
    d = Path(root) / SPLIT_DIR
    X, y = load_npy(d / f"X_{name}.npy", mmap=mmap), load_npy(d / f"y_{name}.npy", mmap=False)
    _check_pair(X, y, d / f"X_{name}.npy")
    return X, y


def load_normalizer(root: str | Path = ".") -> tuple[Normalizer, dict[str, Any]]:
    """Return the fitted normalizer and the whole normalizer.json (classes, image shape, ...)."""
    doc = read_json(Path(root) / SPLIT_DIR / "normalizer.json")
    return Normalizer.from_dict(doc), doc


def _check_pair(X: np.ndarray, y: np.ndarray, where: Path) -> None:
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError(f"{where}: X {X.shape} and y {y.shape} do not match; rerun the stage that wrote them")


DIGEST_CHARS = 12  # hex characters: short enough for a tag, an MLflow dataset digest, a study name part
_CHUNK = 1 << 20  # bytes read at a time: a large split is hashed without loading it


def split_digest(split_dir: str | Path, split: str) -> str:
    """The content hash of one split (its X and y files, streamed): the fingerprint's data parts."""
    split_dir = Path(split_dir)
    h = hashlib.sha256()
    for kind in ("X", "y"):
        path = split_dir / f"{kind}_{split}.npy"
        h.update(path.name.encode() + b"\0")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            raise DataError(f"{path}: not found; run the split stage first (dvc repro split)") from None
    return h.hexdigest()[:DIGEST_CHARS]
