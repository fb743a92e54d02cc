"""A network as bytes without pickle: weights as an ``.npz`` archive, architecture and settings as JSON.

Files are not this package's business: ``pipeline.data.store.save_model`` / ``load_model`` write
and read the pair (``models/final.npz`` + ``.json``) through the project's one atomic writer, and
the served MLflow model reads the same bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from typing import Any

import numpy as np

from pipeline.nn.network import Architecture, Weights

FORMAT = "pipeline-mlp"
VERSION = 1


class ModelFileError(ValueError):
    """A model file this project did not write, or one that is damaged."""


def model_to_bytes(weights: Weights, arch: Architecture, extra: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
    """The ``.npz`` bytes of the weights and the ``.json`` bytes of the architecture and ``extra``."""
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    document = {"format": FORMAT, "version": VERSION, "architecture": asdict(arch), "extra": extra or {}}
    return buffer.getvalue(), json.dumps(document, indent=2, sort_keys=True).encode()


def model_from_bytes(
    npz: bytes, meta: bytes, npz_name: str = "weights.npz", meta_name: str = "model.json"
) -> tuple[Weights, Architecture, dict[str, Any]]:
    """Read what ``model_to_bytes`` wrote; raise ModelFileError naming the file otherwise."""
    try:
        document = json.loads(meta.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{meta_name}: not a model description (invalid JSON); retrain the model") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{meta_name}: not a {FORMAT} file; it was not written by this project")
    if document.get("version") != VERSION:
        raise ModelFileError(f"{meta_name}: model format version {document.get('version')} is not {VERSION}; retrain")
    try:
        a = document["architecture"]
        arch = Architecture(tuple(a["layer_dims"]), a["hidden_activation"], a["init"], a["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{meta_name}: invalid architecture ({e}); retrain the model") from None
    try:
        with np.load(io.BytesIO(npz), allow_pickle=False) as data:
            weights = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(
            f"{npz_name}: unreadable or truncated weights ({type(e).__name__}); retrain the model"
        ) from None
    for l in range(1, arch.n_layers + 1):
        expected = {f"W{l}": (arch.layer_dims[l], arch.layer_dims[l - 1]), f"b{l}": (arch.layer_dims[l], 1)}
        for name, shape in expected.items():
            if name not in weights or weights[name].shape != shape:
                raise ModelFileError(f"{npz_name}: {name} missing or not of shape {shape}; the files do not match")
    if len(weights) != 2 * arch.n_layers:
        raise ModelFileError(f"{npz_name}: unexpected arrays {sorted(weights)}; the files do not match")
    bad = [name for name, W in weights.items() if not np.all(np.isfinite(W))]
    if bad:
        raise ModelFileError(
            f"{npz_name}: {bad[0]} holds NaN or inf weights; retrain the model (lower the learning rate)"
        )
    return weights, arch, document.get("extra", {})
