"""The gradient-check gate: backprop is checked once before a study's first trial."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from pipeline import cli
from pipeline.config import ACTIVATIONS, load_params
from pipeline.data.sources import digits_arrays
from pipeline.nn import activations
from pipeline.paths import SPLIT_DIR
from pipeline.study.gate import THRESHOLD, gate_architecture, gradient_gate
from tests.study.conftest import REPO, study_of


@pytest.fixture
def digits(workspace):
    """The workspace with the digits images (standardized) as its train split, and the default params."""
    X, y = digits_arrays()
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    np.save(SPLIT_DIR / "X_train.npy", X.astype(np.float32))
    np.save(SPLIT_DIR / "y_train.npy", y.astype(np.int64))
    normalizer = {"mode": "none", "pixel_range": 1.0, "classes": [str(c) for c in range(10)]}
    (SPLIT_DIR / "normalizer.json").write_text(json.dumps(normalizer))
    return load_params(REPO / "params.yaml")


def test_the_default_network_passes_on_real_data(digits):
    assert gradient_gate(digits) < THRESHOLD
    arch = gate_architecture(digits, 64, 10)  # the deepest network of the space, 16 wide, float64
    assert arch.layer_dims == (64, 16, 16, 16, 10) and arch.dtype == "float64"


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "relu"])
def test_every_hidden_activation_passes(workspace, activation):
    params = load_params("params.yaml")
    params = dataclasses.replace(params, model=dataclasses.replace(params.model, hidden_activation=activation))
    assert gradient_gate(params) < THRESHOLD


def test_a_backward_bug_stops_the_study_before_it_starts(workspace, monkeypatch, capsys):
    wrong = activations.DERIVATIVES["relu"]
    monkeypatch.setitem(activations.DERIVATIVES, "relu", lambda dA, Z, A: 1.1 * wrong(dA, Z, A))
    assert cli.main(["sweep", "--no-tracking"]) == 5  # NumericalError
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gradient check failed before the study's first trial" in err
    assert re.search(r"relative difference \d\.\d+e[-+]\d+ > 1e-05 for layers \(16, 16, 16, 16, 3\) relu", err), err
    assert study_of(workspace.default_storage) is None  # no study was created
