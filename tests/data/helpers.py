"""Helpers for data and stage tests: a throwaway repository layout in tmp_path and small inputs."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides into a copy of base (nested dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@functools.cache
def repo_params() -> dict[str, Any]:
    """The repository's params.yaml as a mapping, read once per test process: copy before changing it."""
    return yaml.load((REPO / "params.yaml").read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def write_params(root: Path, overrides: dict[str, Any] | None = None, name: str = "params.yaml") -> Path:
    """Write the repository's params.yaml with overrides applied into root; return its path."""
    path = root / name
    text = yaml.dump(merge(repo_params(), overrides or {}), Dumper=yaml.CSafeDumper, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def run_module(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline <argv>`` in root as a separate process (the real command line)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def save_npz(path: Path, X: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, y=y, **extra)
    return path


def blobs(m: int = 200, n_classes: int = 2, shape: tuple[int, ...] = (4, 4, 1), seed: int = 0) -> tuple:
    """Small separable uint8 images (m, *shape) with balanced labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(m) % n_classes
    centers = rng.uniform(30, 220, size=(n_classes, *shape))
    X = np.clip(centers[y] + rng.normal(0, 10, size=(m, *shape)), 0, 255).astype(np.uint8)
    return X, y


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under folder (hidden ones included) with its content, for before/after comparisons."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
