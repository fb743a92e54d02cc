"""A target distribution end to end (issue 11): a constructed shifted data set gives a significant
data-mismatch verdict; the same data without the shift gives none.

The stages run as ``dvc repro`` runs them (prepare -> split -> train -> evaluate -> report, through
``pipeline.cli.main``) in a scratch project; train uses params.yaml's settings (no study), and the
figures are a fixed PNG (``fake_figures``: matplotlib would take most of the time). The data:
8x8 grayscale images of four classes, a bright horizontal bar in rows 0-1, 2-3, 4-5 or 6-7 on a
dark background, under heavy pixel noise (so a model makes a few errors even in distribution). The
shifted target draws the same classes with every bar one row lower (a different placement: the
camera tilted), which a network trained on the primary source reads nearly half the time as the next
class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.cli import main
from tests.data.helpers import save_npz, write_params

CLASSES = np.array(["top", "upper", "lower", "bottom"])
PARAMS = {
    "seed": 7,
    "data": {
        "source": "npz",
        "path": "data/raw/web.npz",
        "target": {"source": "npz", "path": "data/raw/phone.npz"},
    },
    # with a target, dev and test split it 50/50 (split.train is not used); train-dev: 20% of the primary rows
    "split": {"train": 0.6, "dev": 0.2, "test": 0.2, "train_dev": 0.2},
    "model": {"hidden_layers": [16]},
    "train": {"epochs": 5, "batch_size": 64, "learning_rate": 0.01, "use_study_best": False},
    # clean labels: a careful person makes no mistake; one learning-curve point (the final model), no seed check
    "report": {"human_error": 0.0, "learning_curve_fractions": [1.0], "stability_seeds": 0},
}


def bars(m: int, seed: int, shift_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``m`` uint8 images (m, 8, 8, 1), balanced over the four classes; the bars moved down by ``shift_rows``."""
    rng = np.random.default_rng(seed)
    y = np.arange(m) % len(CLASSES)
    X = np.full((m, 8, 8, 1), 60.0)
    for k in range(len(CLASSES)):
        X[y == k, 2 * k : 2 * k + 2] = 180.0
    X = np.roll(X, shift_rows, axis=1)
    X = np.clip(X + rng.normal(0.0, 110.0, X.shape), 0, 255)
    return X.astype(np.uint8), y


def run_pipeline(root: Path, shift_rows: int) -> dict[str, Any]:
    """3000 primary and 1200 target images through every stage but tune; return diagnosis.json."""
    (root / "data/raw").mkdir(parents=True)
    save_npz(root / "data/raw/web.npz", *bars(3000, seed=1), classes=CLASSES)
    save_npz(root / "data/raw/phone.npz", *bars(1200, seed=2, shift_rows=shift_rows), classes=CLASSES)
    write_params(root, PARAMS)
    stages = (["prepare"], ["split"], ["train", "--no-tracking"], ["evaluate"], ["report", "--no-tracking"])
    for stage, *flags in stages:
        assert main([stage, "--params", "params.yaml", *flags]) == 0, stage
    split = json.loads((root / "reports/split.json").read_text())
    assert split["sizes"] == {"train": 2400, "train_dev": 600, "dev": 600, "test": 600}
    assert split["distributions"]["dev"] == "target" and split["distributions"]["train_dev"] == "primary"
    return json.loads((root / "reports/diagnosis.json").read_text())


def mismatch(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return d["gaps"]["data_mismatch"], d["errors"]["train_dev"], d["errors"]["dev"]


@pytest.mark.usefixtures("fake_figures")
def test_a_shifted_target_gives_a_significant_data_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    d = run_pipeline(tmp_path, shift_rows=1)
    gap, train_dev, dev = mismatch(d)
    # train-dev 7/600 against dev 277/600 here: +45.0 points, Newcombe interval [+40.9, +49.0]
    assert train_dev["rate"] < 0.03 and dev["rate"] > 0.3
    assert gap["formula"] == "dev - train-dev" and gap["value"] == pytest.approx(dev["rate"] - train_dev["rate"])
    assert gap["significant"] and gap["low"] > 0.3 and gap["status"] == "problem"
    assert d["verdict"] == "data_mismatch" and d["data_mismatch"] == gap["value"]
    for key in ("avoidable_bias", "variance"):  # nothing else is a problem: mismatch alone names the verdict
        assert d["gaps"][key]["status"] != "problem"
    assert d["remedies"][0] == {**d["remedies"][0], "set": {"split.target_train": 0.2}, "addresses": "data_mismatch"}
    assert d["target"]["n_examples"] == 1200 and d["target"]["in_train"] == 0


@pytest.mark.usefixtures("fake_figures")
def test_the_same_data_without_the_shift_gives_no_data_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    d = run_pipeline(tmp_path, shift_rows=0)
    gap, train_dev, dev = mismatch(d)
    # a few errors on both sides (train-dev 7/600, dev 6/600 here: -0.17 points, [-1.50, +1.14]): noise
    assert train_dev["errors"] > 0 and dev["errors"] > 0 and abs(gap["value"]) < 0.02
    assert not gap["significant"] and gap["low"] < 0 < gap["high"] and gap["status"] == "fine"
    assert d["verdict"] != "data_mismatch"
    assert all(r["addresses"] != "data_mismatch" for r in d["remedies"])
