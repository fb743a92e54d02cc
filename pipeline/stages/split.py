"""Stage ``split``: seeded stratified train/dev/test (+ train_dev) split, normalized with train statistics.

Reads ``data/prepared/``; writes ``data/split/`` (X_<split>.npy, y_<split>.npy, normalizer.json) as
one unit and ``reports/split.json`` (sizes, class counts per split, duplicates across splits).
The normalizer is fitted on the training rows only and applied unchanged to every other split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Params, load_params
from pipeline.data.memory import check_working_set, split_set
from pipeline.data.normalize import Normalizer, chunk_rows
from pipeline.data.split import find_duplicates, split_rows
from pipeline.data.store import load_origin, load_prepared
from pipeline.io import atomic_dir, atomic_save_npy, atomic_save_npy_blocks, atomic_write_json
from pipeline.paths import PREPARED_DIR, SPLIT_DIR, SPLIT_REPORT, SPLITS


def configure(parser: argparse.ArgumentParser) -> None:
    """No options beyond --params: fractions come from split, the mode from prepare.normalize."""


def run(args: argparse.Namespace) -> int:
    report = split(load_params(args.params))
    sizes = ", ".join(f"{k} {v}" for k, v in report["sizes"].items())
    print(f"split: {sizes}; {report['duplicates']['count']} duplicate images across splits -> {SPLIT_DIR}")
    return 0


def split(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Split, normalize and write every split; return the report written to reports/split.json."""
    root = Path(root)
    X, y, meta = load_prepared(root)
    classes = list(meta["classes"])
    origin = load_origin(root)
    check_working_set(
        split_set(*X.shape),
        f"{PREPARED_DIR / 'X.npy'} ({X.shape[0]} x {X.shape[1]} float32 rows)",
        "bring fewer examples and rerun the prepare stage",
    )
    rows, hashes, dropped = split_rows(X, y, params.split, params.seed, origin)  # hashes: reused below
    normalizer = Normalizer.fit(X, params.prepare.normalize, float(meta["pixel_range"]), rows=rows["train"])
    report = {
        "seed": params.seed,
        "fractions": {"train": params.split.train, "dev": params.split.dev, "test": params.split.test},
        "train_dev_fraction": params.split.train_dev,
        "normalize": params.prepare.normalize,
        "sizes": {name: len(rows[name]) for name in SPLITS},
        "class_counts": {
            name: {c: int(n) for c, n in zip(classes, np.bincount(y[rows[name]], minlength=len(classes)), strict=True)}
            for name in SPLITS
        },
        "duplicates": find_duplicates(X, rows, hashes=hashes),
        "duplicates_policy": params.split.duplicates,
        "dropped_duplicates": len(dropped),  # later copies removed before splitting (policy drop)
    }
    if origin is not None:
        target = meta.get("target") or {}
        report["target"] = {
            "source": target.get("source"),
            "path": target.get("path"),
            "n_examples": int(np.sum(origin == 1)),
            "target_train": params.split.target_train,
            "in_train": int(np.sum(origin[rows["train"]] == 1)),
        }
        report["distributions"] = {"train": "primary", "train_dev": "primary", "dev": "target", "test": "target"}
    with atomic_dir(root / SPLIT_DIR) as tmp:
        for name in SPLITS:
            _write_rows(tmp / f"X_{name}.npy", X, rows[name], normalizer)
            atomic_save_npy(tmp / f"y_{name}.npy", y[rows[name]].astype(np.int64))
        doc = {**normalizer.to_dict(), "classes": classes, "image_shape": meta["image_shape"], "source": meta["source"]}
        if origin is not None:  # the train stage reads here that dev is another distribution than train
            doc["distributions"] = report["distributions"]
        atomic_write_json(tmp / "normalizer.json", doc)
    atomic_write_json(root / SPLIT_REPORT, report)
    return report


def _write_rows(path: Path, X: np.ndarray, rows: np.ndarray, normalizer: Normalizer) -> None:
    """Normalize the chosen rows chunk by chunk straight into a new .npy (bounded memory)."""
    chunk = chunk_rows(X.shape[1])
    blocks = (normalizer.transform(X[rows[i : i + chunk]]) for i in range(0, len(rows), chunk))
    atomic_save_npy_blocks(path, (len(rows), X.shape[1]), np.float32, blocks)
