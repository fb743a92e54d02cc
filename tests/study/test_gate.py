"""The gradient-check gate: backprop is checked once before a study's first trial."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline import cli
from pipeline.config import ACTIVATIONS, load_params
from pipeline.nn import activations
from pipeline.paths import SPLIT_DIR
from pipeline.study import launch
from pipeline.study.gate import THRESHOLD, gate_architecture, gradient_gate
from tests.study.conftest import REPO, study_of, write_params


@pytest.fixture
def digits(workspace):
    """The workspace with the digits images (standardized) as its train split, and the default params."""
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    np.save(SPLIT_DIR / "X_train.npy", X.astype(np.float32))
    np.save(SPLIT_DIR / "y_train.npy", y.astype(np.int64))
    normalizer = {"mode": "none", "pixel_range": 1.0, "classes": [str(c) for c in range(10)]}
    (SPLIT_DIR / "normalizer.json").write_text(json.dumps(normalizer))
    return load_params(REPO / "params.yaml")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_configured_family_passes_on_real_data(digits, activation):
    params = dataclasses.replace(digits, model=dataclasses.replace(digits.model, hidden_activation=activation))
    assert gradient_gate(params) < THRESHOLD
    arch = gate_architecture(params, 64, 10)  # the deepest network of the space, 16 wide, float64
    assert arch.layer_dims == (64, 16, 16, 16, 10) and arch.dtype == "float64"


def test_a_backward_bug_stops_the_study_before_it_starts(workspace, monkeypatch, capsys):
    wrong = activations.DERIVATIVES["relu"]
    monkeypatch.setitem(activations.DERIVATIVES, "relu", lambda dA, Z, A: 1.1 * wrong(dA, Z, A))
    assert cli.main(["sweep", "--no-tracking"]) == 5  # NumericalError
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gradient check failed before the study's first trial" in err
    assert re.search(r"relative difference \d\.\d+e[-+]\d+ > 1e-05 for layers \(16, 16, 16, 16, 3\) relu", err), err
    assert study_of(workspace.default_storage) is None  # no study was created


def test_the_gate_runs_once_per_study(workspace, monkeypatch, capsys):
    write_params(workspace.root / "params.yaml", n_trials=1, epochs=2)
    assert cli.main(["tune", "--no-tracking"]) == 0
    study = study_of(workspace.default_storage)
    checked = study.user_attrs["gradient_check"]
    assert checked["fingerprint"] == study.user_attrs["fingerprint"] and checked["relative_difference"] < THRESHOLD

    def fail(*args):
        raise AssertionError("the gate ran again")

    monkeypatch.setattr(launch, "gradient_gate", fail)
    assert cli.main(["sweep", "--resume", "--no-tracking", "--n-trials", "2"]) == 0, capsys.readouterr()
