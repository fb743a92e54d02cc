"""Seeded stratified splitting and cross-split duplicate detection (pure functions on arrays)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np

from pipeline.config import SplitParams
from pipeline.data.normalize import chunk_rows
from pipeline.errors import DataError
from pipeline.paths import SPLITS

__all__ = ["content_keys", "find_duplicates", "row_hashes", "split_rows", "stratified_split", "target_split"]


def stratified_split(
    labels: np.ndarray, fractions: SplitParams, seed: int, keys: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Return row indices per split; each split keeps the class proportions of the whole.

    Split sizes are fixed first (``round(m * fraction)``), then shared among classes by the
    largest-remainder rule, so sizes are exact and class balance is as close as whole rows allow.
    ``train_dev`` is ``split.train_dev`` of the training rows, held out from training.

    ``keys`` (one per row, e.g. ``content_keys``) decide which rows go where and in which order
    each split lists them: rows are taken in key order within each class, so the same examples
    given in any file order land in the same splits, in the same order. Without keys the order
    is a seeded permutation of the row numbers (then it depends on the file order).
    """
    labels = np.asarray(labels)
    m = len(labels)
    if keys is None:
        keys = np.random.default_rng(seed).permutation(m).astype(np.uint64)
    keys = np.asarray(keys)
    if keys.shape != (m,):
        raise ValueError(f"need one key per row: {keys.shape} keys for {m} labels")
    n_test, n_dev = round(m * fractions.test), round(m * fractions.dev)
    n_train_dev = round((m - n_test - n_dev) * fractions.train_dev)
    for key, n in (("split.test", n_test), ("split.dev", n_dev)):
        if n == 0:
            raise DataError(f"{key} leaves 0 of {m} examples in that split; raise {key} or bring more data")
    if fractions.train_dev > 0 and n_train_dev == 0:
        raise DataError(f"split.train_dev leaves 0 examples in train_dev (m={m}); raise it or set it to 0")
    if m - n_test - n_dev - n_train_dev <= 0:
        raise DataError(f"split leaves 0 of {m} examples for training; lower split.dev/test/train_dev")
    sizes = [("test", n_test), ("dev", n_dev), ("train_dev", n_train_dev)]
    out = _stratified_parts(labels, keys, np.arange(m), sizes, rest="train")
    _check_training_rows(labels, out["train"], np.unique(labels))
    return {name: out[name] for name in SPLITS}


def target_split(
    labels: np.ndarray, keys: np.ndarray, origin: np.ndarray, fractions: SplitParams, train_fraction: float
) -> dict[str, np.ndarray]:
    """Split with a target distribution (``origin`` 1): dev and test come from the target rows only,
    in the ratio split.dev : split.test, after ``train_fraction`` of them go to training; train and
    train-dev come from the primary rows (origin 0), train-dev being split.train_dev of them."""
    primary, target = np.flatnonzero(origin == 0), np.flatnonzero(origin == 1)
    m_t = len(target)
    n_moved = round(m_t * train_fraction)
    n_dev = round((m_t - n_moved) * fractions.dev / (fractions.dev + fractions.test))
    n_test = m_t - n_moved - n_dev
    for key, n in (("split.dev", n_dev), ("split.test", n_test)):
        if n == 0:
            raise DataError(f"{key} leaves 0 of the {m_t} target examples in that split; bring more target data")
    if train_fraction > 0 and n_moved == 0:
        raise DataError(f"data.target.train_fraction moves 0 of {m_t} target examples; raise it or set it to 0")
    t = _stratified_parts(labels, keys, target, [("train", n_moved), ("dev", n_dev)], rest="test")
    n_train_dev = round(len(primary) * fractions.train_dev)
    if fractions.train_dev > 0 and n_train_dev == 0:
        raise DataError(f"split.train_dev leaves 0 of {len(primary)} primary examples in train_dev; raise it")
    p = _stratified_parts(labels, keys, primary, [("train_dev", n_train_dev)], rest="train")
    out = {"train": _by_key(np.concatenate([p["train"], t["train"]]), keys), "train_dev": p["train_dev"]}
    out |= {"dev": t["dev"], "test": t["test"]}
    _check_training_rows(labels, out["train"], np.unique(labels))
    return {name: out[name] for name in SPLITS}


def _stratified_parts(
    labels: np.ndarray, keys: np.ndarray, rows: np.ndarray, sizes: list[tuple[str, int]], rest: str
) -> dict[str, np.ndarray]:
    """Take each named part's size from ``rows`` in turn, stratified, in key order; ``rest`` gets the rest."""
    classes = np.unique(labels[rows])
    # each class's rows in key order (a stable sort: byte-identical rows keep their file order,
    # which cannot change what a split holds, only which of the identical copies)
    pools = [_by_key(rows[labels[rows] == c], keys) for c in classes]
    taken = np.zeros(len(classes), dtype=np.int64)  # rows used so far from the front of each pool
    out: dict[str, np.ndarray] = {}
    for name, n in sizes:
        counts = _allocate(n, np.array([len(p) for p in pools]) - taken)
        out[name] = _by_key(_concat([p[t : t + k] for p, t, k in zip(pools, taken, counts, strict=True)]), keys)
        taken += counts
    out[rest] = _by_key(_concat([p[t:] for p, t in zip(pools, taken, strict=True)]), keys)
    return {name: part.astype(np.int64) for name, part in out.items()}


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _check_training_rows(labels: np.ndarray, train: np.ndarray, classes: np.ndarray) -> None:
    missing = sorted(set(classes.tolist()) - set(labels[train].tolist()))
    if missing:
        raise DataError(f"class {missing[0]} has too few examples to keep any for training; bring more data")


def split_rows(
    X: np.ndarray,
    y: np.ndarray,
    fractions: SplitParams,
    seed: int,
    origin: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], list[bytes], np.ndarray]:
    """The split stage's rule: rows per split keyed by content, the row hashes, and the dropped rows.

    With ``split.duplicates: drop`` (the default) every later copy of a byte-identical example is
    removed before splitting, so no image can sit in train and in dev or test at once; with a
    target source the primary rows come first, so a target image already among the primary ones
    is the copy that goes. ``keep`` keeps them (the split report still counts the leaks).
    """
    hashes = row_hashes(X)
    keys = content_keys(hashes, seed)
    dropped = _later_copies(hashes) if fractions.duplicates == "drop" else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(y)), dropped)
    if origin is None:
        rows = stratified_split(y[kept], fractions, seed, keys=keys[kept])
    else:
        rows = target_split(y[kept], keys[kept], np.asarray(origin)[kept], fractions, fractions.target_train)
    return {name: kept[idx] for name, idx in rows.items()}, hashes, dropped


def _later_copies(hashes: list[bytes]) -> np.ndarray:
    first: dict[bytes, int] = {}
    later = [i for i, h in enumerate(hashes) if first.setdefault(h, i) != i]
    return np.array(later, dtype=np.int64)


def _by_key(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return rows[np.argsort(keys[rows], kind="stable")]


def content_keys(hashes: list[bytes], seed: int) -> np.ndarray:
    """A seeded sort key per row from its content hash (``row_hashes``): independent of file order."""
    salt = seed.to_bytes(8, "little", signed=True)
    return np.array(
        [int.from_bytes(hashlib.blake2b(h, key=salt, digest_size=8).digest(), "little") for h in hashes],
        dtype=np.uint64,
    )


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


def find_duplicates(
    X: np.ndarray, splits: dict[str, np.ndarray], max_examples: int = 5, hashes: list[bytes] | None = None
) -> dict[str, Any]:
    """Find exact duplicate rows that sit in different splits (a leak: the model may have seen a test image)."""
    where = np.empty(len(X), dtype=object)
    for name, rows in splits.items():
        where[rows] = name
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(row_hashes(X) if hashes is None else hashes):
        if where[i] is not None:  # rows dropped before splitting are in no split
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
