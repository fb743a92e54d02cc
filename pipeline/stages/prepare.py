"""Stage ``prepare``: load the configured source, flatten (m, h, w, c) images to rows, write raw float32.

Writes ``data/prepared/{X.npy, y.npy, meta.json}`` as one unit (a failed run leaves the old folder);
with ``data.target`` the target examples follow the primary ones and ``origin.npy`` marks each row
(0 primary, 1 target). Normalization happens in the split stage, which may only look at training rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Params, SyntheticParams, load_params
from pipeline.data.memory import check_working_set, split_set
from pipeline.data.sources import Dataset, load_dataset, load_target, synthetic_bayes_error
from pipeline.io import atomic_dir, atomic_save_npy, atomic_save_npy_blocks, atomic_write_json
from pipeline.paths import PREPARED_DIR


def configure(parser: argparse.ArgumentParser) -> None:
    """No options beyond --params: everything comes from the data section."""


def run(args: argparse.Namespace) -> int:
    meta = prepare(load_params(args.params))
    print(
        f"prepare: {meta['n_examples']} examples x {meta['n_features']} features, "
        f"{len(meta['classes'])} classes ({meta['source']}) -> {PREPARED_DIR}"
    )
    return 0


def prepare(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Load, flatten and write the prepared arrays; return meta.json's content."""
    root = Path(root)
    ds = load_dataset(params.data, params.seed, root)
    target = load_target(params.data, ds, root)
    parts = [ds] if target is None else [ds, target]
    m = sum(len(p.images) for p in parts)
    n_x = int(np.prod(ds.image_shape))
    meta = {
        "source": ds.source,
        "path": params.data.path,
        "test_path": params.data.test_path,
        "image_shape": list(ds.image_shape),
        "classes": list(ds.classes),
        "positive_class": params.data.positive_class,
        "pixel_range": ds.pixel_range,
        "n_examples": m,
        "n_features": n_x,
    }
    if target is not None:
        t = params.data.target
        meta["target"] = {"source": target.source, "path": t.path, "n_examples": len(target.images)}
    if params.data.source == "synthetic":
        meta["synthetic"] = synthetic_meta(params.data.synthetic, n_x, ds.images)
    # The split stage reads these rows next, mapped: refuse here, before writing them, if they cannot fit.
    held = sum(p.images.nbytes for p in parts if isinstance(p.images, np.ndarray))  # freed when prepare ends
    check_working_set(
        split_set(m, n_x),
        f"{PREPARED_DIR / 'X.npy'} ({m} x {n_x} float32 rows, which the split stage maps)",
        "lower data.synthetic.m" if params.data.source == "synthetic" else "bring fewer or smaller images",
        freed=held,
    )
    with atomic_dir(root / PREPARED_DIR) as tmp:
        # X streams to disk in chunks: neither a float copy of the source nor the file is ever in memory
        atomic_save_npy_blocks(tmp / "X.npy", (m, n_x), np.float32, _row_blocks(parts, n_x))
        atomic_save_npy(tmp / "y.npy", np.concatenate([p.labels for p in parts]).astype(np.int64))
        if target is not None:
            origin = np.repeat(np.arange(len(parts), dtype=np.int8), [len(p.images) for p in parts])
            atomic_save_npy(tmp / "origin.npy", origin)
        atomic_write_json(tmp / "meta.json", meta)
    return meta


BLOCK_PIXELS = 2**24  # pixels written at a time: 64 MB of float32 rows


def _row_blocks(parts: Sequence[Dataset], n_x: int) -> Iterator[np.ndarray]:
    """Every part's images as float32 rows (k, n_x), BLOCK_PIXELS at a time, in order."""
    chunk = max(1, BLOCK_PIXELS // max(1, n_x))
    for part in parts:
        for i in range(0, len(part.images), chunk):
            yield part.images[i : i + chunk].reshape(-1, n_x).astype(np.float32)


def synthetic_meta(spec: SyntheticParams, n_x: int, images: Any = None) -> dict[str, Any]:
    """What meta.json records of the synthetic source: its label noise and the Bayes error it sets.

    At ``separation`` 1 the Bayes error is ``label_noise`` when an image alone says its class, which
    holds from 64 pixels on (``sources._make_synthetic``); below that the prototypes overlap and it
    is not known (null). Below separation 1 it is computed from the generating model on the first
    images (``sources.synthetic_bayes_error``, given ``images``) and recorded with its standard error.
    """
    if spec.separation == 1.0:
        return {"label_noise": spec.label_noise, "bayes_error": spec.label_noise if n_x >= 64 else None}
    known = hasattr(images, "prototypes")  # SyntheticImages; None or a plain array: not computed
    bayes, se = synthetic_bayes_error(images, spec.label_noise) if known else (None, None)
    return {
        "label_noise": spec.label_noise,
        "separation": spec.separation,
        "bayes_error": None if bayes is None else round(bayes, 4),
        "bayes_error_se": None if se is None else round(se, 4),
    }
