"""Feature normalization fitted on the training rows only, then applied unchanged to every split.

Modes: ``none`` (raw values), ``scale`` (divide by the source's pixel range, e.g. the course's
/255), ``standardize`` (scale to [0, 1] first, then subtract the train mean and divide by the train
std). The fitted statistics travel as plain JSON (``to_dict``) in ``data/split/normalizer.json`` and
in the final model's metadata, so raw pixel rows can be predicted later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import DataError

__all__ = ["Normalizer", "chunk_rows"]

# The modes of config.NORMALIZE_MODES (tests/test_architecture.py checks they match). Spelled here
# because this file also travels alone inside the served MLflow model, where config does not.
MODES = ("scale", "standardize", "none")
Mode = Literal["scale", "standardize", "none"]


def chunk_rows(n_x: int, budget: int = 2**22) -> int:
    """Rows per chunk so that a float64 chunk of width n_x stays near 32 MB."""
    return max(1, budget // max(1, n_x))


@dataclass(frozen=True, eq=False)
class Normalizer:
    mode: Mode
    pixel_range: float
    mean: np.ndarray | None = None  # (n_x,) float64, standardize only
    std: np.ndarray | None = None  # (n_x,) float64, never 0

    @classmethod
    def fit(cls, X: np.ndarray, mode: Mode, pixel_range: float, rows: np.ndarray | None = None) -> Normalizer:
        """Compute the statistics from the training rows of X (m, n_x): ``rows``, or all of X if None.

        Nothing but training rows may reach this function: dev and test must not shape the statistics.
        """
        if mode != "standardize":
            return cls(mode, float(pixel_range))
        rows = np.arange(len(X)) if rows is None else np.asarray(rows)
        m, n_x = len(rows), X.shape[1]
        if m == 0:
            raise DataError("cannot fit the normalizer on 0 training examples")
        # two passes over chunks in float64: exact enough, and bounded memory for memory-mapped inputs
        step = chunk_rows(n_x)
        chunks = [rows[i : i + step] for i in range(0, m, step)]

        def scaled(c: np.ndarray) -> np.ndarray:
            return np.asarray(X[c], dtype=np.float64) / pixel_range

        mean = sum(scaled(c).sum(axis=0) for c in chunks) / m
        sq = sum(((scaled(c) - mean) ** 2).sum(axis=0) for c in chunks)
        std = np.sqrt(sq / m)
        std[std < 1e-12] = 1.0  # constant features (blank digit corners) stay 0 instead of dividing by 0
        return cls(mode, float(pixel_range), mean, std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return normalized float32 rows (m, n_x)."""
        X = np.asarray(X, dtype=np.float64)
        if self.mode == "none":
            return X.astype(np.float32)
        X = X / self.pixel_range
        if self.mode == "standardize":
            if X.shape[-1] != self.mean.shape[0]:
                raise DataError(f"expected {self.mean.shape[0]} features per row, got {X.shape[-1]}")
            X = (X - self.mean) / self.std
        return X.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pixel_range": self.pixel_range,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        try:
            mode, pixel_range = d["mode"], float(d["pixel_range"])
            mean = None if d.get("mean") is None else np.asarray(d["mean"], dtype=np.float64)
            std = None if d.get("std") is None else np.asarray(d["std"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"normalizer metadata is incomplete or malformed ({e!r})") from None
        if mode not in MODES or (mode == "standardize" and (mean is None or std is None)):
            raise DataError(f"normalizer metadata has an unusable mode {mode!r} or lacks its statistics")
        return cls(mode, pixel_range, mean, std)
