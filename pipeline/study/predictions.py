"""Per-example dev predictions of every finished trial: compact in the study, one array file beside it.

Each COMPLETE trial keeps, in its user attribute ``dev_pred``, the class its network predicts for
every dev example, in dev-file order: the class indices as bytes (uint8 up to 256 classes, else
uint16, little-endian), zlib-compressed and base64-encoded, behind the dtype's name:
``"uint8:eJz..."``. Ten classes in the dev file's random order cost about 0.65 bytes per example
(base64 included) from a few hundred examples on, two classes 0.25; a tiny dev set pays ~30 bytes
of framing. The objective writes it with the trial's other attributes, before the trial is COMPLETE.

The tune stage gathers them (``gather``) into ``reports/study/dev_predictions.npz``
(``write_dev_predictions``): ``trial_numbers`` (k,) int64, ``predictions`` (k, n_dev) int16 (row
i is trial ``trial_numbers[i]``), and ``y_dev`` (n_dev,) int64, so the report can pair trials
example by example (ties, a selection-corrected score) without reading the study.
"""

from __future__ import annotations

import base64
import binascii
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import DataError
from pipeline.io import atomic_write

ATTR = "dev_pred"  # the trial user attribute
DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2")}


def encode(labels: np.ndarray, n_classes: int) -> str:
    """The attribute text of predicted class indices ``labels`` (m,) in 0..n_classes-1."""
    name = "uint8" if n_classes <= 256 else "uint16"
    raw = np.ascontiguousarray(labels, dtype=DTYPES[name]).tobytes()
    return f"{name}:{base64.b64encode(zlib.compress(raw, 9)).decode('ascii')}"


def decode(text: str) -> np.ndarray:
    """The class indices (m,) int64 of an attribute ``encode`` wrote; ValueError if it is not one."""
    name, _, payload = text.partition(":")
    if name not in DTYPES:
        raise ValueError(f"unknown prediction encoding '{name}'")
    try:
        raw = zlib.decompress(base64.b64decode(payload.encode("ascii"), validate=True))
    except (binascii.Error, zlib.error, UnicodeEncodeError) as e:
        raise ValueError(f"corrupt predictions ({e})") from None
    return np.frombuffer(raw, dtype=DTYPES[name]).astype(np.int64)


def gather(trials: Iterable[FrozenTrial], n_dev: int) -> tuple[np.ndarray, np.ndarray]:
    """``(trial_numbers, predictions)`` of the COMPLETE trials that kept their predictions, by number.

    A COMPLETE trial without the attribute (run by code older than it) is left out; one whose
    predictions are unreadable or not ``n_dev`` long is a DataError: its study and the dev split
    no longer belong together.
    """
    numbers, rows = [], []
    for t in sorted(trials, key=lambda t: t.number):
        text = t.user_attrs.get(ATTR)
        if t.state != TrialState.COMPLETE or text is None:
            continue
        try:
            row = decode(text)
        except ValueError as e:
            raise DataError(f"trial {t.number}: user attribute '{ATTR}': {e}; rerun the tune stage") from None
        if len(row) != n_dev:
            raise DataError(
                f"trial {t.number} predicted {len(row)} dev examples but data/split/y_dev.npy has {n_dev}; "
                "rerun the tune stage on this split"
            )
        numbers.append(t.number)
        rows.append(row)
    predictions = np.array(rows, dtype=np.int64).reshape(len(rows), n_dev)
    if predictions.size and predictions.max() > np.iinfo(np.int16).max:
        raise DataError(f"a trial predicted a class above {np.iinfo(np.int16).max}: the int16 file cannot hold it")
    return np.array(numbers, dtype=np.int64), predictions.astype(np.int16)


def write_dev_predictions(
    path: str | Path, trial_numbers: np.ndarray, predictions: np.ndarray, y_dev: np.ndarray
) -> Path:
    """Write ``gather``'s arrays and ``y_dev`` to ``path`` atomically: an ``.npz`` that ``np.load`` reads.

    Unlike ``np.savez``, the same arrays give the same bytes (every member is dated 1980-01-01), so
    an unchanged study leaves the file's hash, and the report stage downstream of it, unchanged;
    members are deflated, as the file is committed to git.
    """
    arrays = {
        "trial_numbers": np.asarray(trial_numbers, dtype=np.int64),
        "predictions": np.asarray(predictions, dtype=np.int16),
        "y_dev": np.asarray(y_dev, dtype=np.int64),
    }

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(member, "w", force_zip64=True) as out:  # as np.savez: any size
                    np.lib.format.write_array(out, array, allow_pickle=False)

    return atomic_write(path, write)
