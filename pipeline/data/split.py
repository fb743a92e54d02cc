"""Seeded stratified splitting and cross-split duplicate detection (pure functions on arrays)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np

from pipeline.config import SplitParams
from pipeline.data.normalize import chunk_rows
from pipeline.errors import DataError

__all__ = ["SPLITS", "find_duplicates", "stratified_split"]

SPLITS = ("train", "dev", "test", "train_dev")


def stratified_split(labels: np.ndarray, fractions: SplitParams, seed: int) -> dict[str, np.ndarray]:
    """Return sorted row indices per split; each split keeps the class proportions of the whole.

    Split sizes are fixed first (``round(m * fraction)``), then shared among classes by the
    largest-remainder rule, so sizes are exact and class balance is as close as whole rows allow.
    ``train_dev`` is ``split.train_dev`` of the training rows, held out from training.
    """
    labels = np.asarray(labels)
    m = len(labels)
    n_test, n_dev = round(m * fractions.test), round(m * fractions.dev)
    n_train_dev = round((m - n_test - n_dev) * fractions.train_dev)
    for key, n in (("split.test", n_test), ("split.dev", n_dev)):
        if n == 0:
            raise DataError(f"{key} leaves 0 of {m} examples in that split; raise {key} or bring more data")
    if fractions.train_dev > 0 and n_train_dev == 0:
        raise DataError(f"split.train_dev leaves 0 examples in train_dev (m={m}); raise it or set it to 0")
    if m - n_test - n_dev - n_train_dev <= 0:
        raise DataError(f"split leaves 0 of {m} examples for training; lower split.dev/test/train_dev")

    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]  # shuffled rows of each class
    taken = np.zeros(len(classes), dtype=np.int64)  # rows used so far from the front of each pool
    out: dict[str, np.ndarray] = {}
    for name, n in (("test", n_test), ("dev", n_dev), ("train_dev", n_train_dev)):
        counts = _allocate(n, np.array([len(p) for p in pools]) - taken)
        out[name] = np.sort(np.concatenate([p[t : t + k] for p, t, k in zip(pools, taken, counts, strict=True)]))
        taken += counts
    out["train"] = np.sort(np.concatenate([p[t:] for p, t in zip(pools, taken, strict=True)]))
    missing = [int(c) for c, p, t in zip(classes, pools, taken, strict=True) if len(p) - t == 0]
    if missing:
        raise DataError(f"class {missing[0]} has too few examples to keep any for training; bring more data")
    return {name: out[name].astype(np.int64) for name in SPLITS}


def _allocate(n: int, available: np.ndarray) -> np.ndarray:
    """Share n rows among classes in proportion to what each has left (largest remainder, ties by class)."""
    if n == 0:
        return np.zeros_like(available)
    quota = n * available / available.sum()
    counts = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def row_hashes(X: np.ndarray) -> list[bytes]:
    """A 16-byte content hash of every row: equal hashes mean byte-identical examples."""
    hashes: list[bytes] = []
    chunk = chunk_rows(X.shape[1])
    for i in range(0, len(X), chunk):
        block = np.ascontiguousarray(X[i : i + chunk])
        hashes.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block)
    return hashes


def find_duplicates(X: np.ndarray, splits: dict[str, np.ndarray], max_examples: int = 5) -> dict[str, Any]:
    """Find exact duplicate rows that sit in different splits (a leak: the model may have seen a test image)."""
    where = np.empty(len(X), dtype=object)
    for name, rows in splits.items():
        where[rows] = name
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(row_hashes(X)):
        groups[h].append(i)
    crossing = [rows for rows in groups.values() if len({where[r] for r in rows}) > 1]
    pairs: dict[str, int] = defaultdict(int)
    for rows in crossing:
        names = sorted({where[r] for r in rows}, key=SPLITS.index)
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                pairs[f"{names[a]}/{names[b]}"] += 1
    return {
        "count": len(crossing),  # distinct images present in more than one split
        "rows": sum(len(r) for r in crossing),
        "redundant_rows": sum(len(r) - 1 for r in groups.values()),  # extra copies anywhere, same split included
        "by_pair": dict(pairs),
        "examples": [{"rows": rows, "splits": [where[r] for r in rows]} for rows in crossing[:max_examples]],
    }
