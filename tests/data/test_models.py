"""Models round-trip without pickle (bytes in pipeline.nn, files in pipeline.data.models); foreign,
damaged or non-finite files are clear errors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.models import load_model, save_model
from pipeline.errors import DataError
from pipeline.nn import Architecture, initialize, model_from_bytes, model_to_bytes, predict


@pytest.fixture
def saved(tmp_path: Path):
    arch = Architecture.build(5, 3, (4,), "tanh", dtype="float32")
    weights = initialize(arch, np.random.default_rng(0))
    save_model(tmp_path / "model", weights, arch, {"classes": ["a", "b", "c"]})
    return tmp_path / "model", weights, arch


def test_round_trip_keeps_weights_architecture_and_metadata(saved) -> None:
    path, weights, arch = saved
    loaded, arch2, extra = load_model(path)
    assert arch2 == arch and extra == {"classes": ["a", "b", "c"]}
    for name in weights:
        assert np.array_equal(loaded[name], weights[name]) and loaded[name].dtype == np.float32
    X = np.random.default_rng(1).standard_normal((5, 10))
    np.testing.assert_array_equal(predict(X, loaded, arch2), predict(X, weights, arch))


def test_a_truncated_weights_file_is_a_clear_error(saved) -> None:
    path = saved[0]
    npz = path.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated"):
        load_model(path)


def test_a_json_file_we_did_not_write_is_rejected(saved) -> None:
    path = saved[0]
    path.with_suffix(".json").write_text(json.dumps({"layers": [1, 2]}))
    with pytest.raises(DataError, match="not written by this project"):
        load_model(path)


def test_a_pickled_array_is_refused(saved, tmp_path: Path) -> None:
    path = saved[0]
    np.savez(path.with_suffix(".npz"), W1=np.array([object()], dtype=object))
    with pytest.raises(DataError):
        load_model(path)


def test_mismatched_shapes_are_rejected(saved) -> None:
    path, weights, _ = saved
    weights = dict(weights, W1=np.zeros((7, 5), dtype=np.float32))
    np.savez(path.with_suffix(".npz"), **weights)
    with pytest.raises(DataError, match="W1"):
        load_model(path)


def test_missing_files_say_to_train_first(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run the train stage"):
        load_model(tmp_path / "absent")


def test_saved_files_get_the_usual_permissions(saved) -> None:
    path = saved[0]
    umask = os.umask(0)
    os.umask(umask)
    for suffix in (".npz", ".json"):
        assert path.with_suffix(suffix).stat().st_mode & 0o777 == 0o666 & ~umask


def test_bytes_round_trip_without_files() -> None:
    arch = Architecture.build(3, 2, (2,))
    weights = initialize(arch, np.random.default_rng(0))
    npz, meta = model_to_bytes(weights, arch, {"k": 1})
    loaded, arch2, extra = model_from_bytes(npz, meta)
    assert arch2 == arch and extra == {"k": 1} and all(np.array_equal(loaded[k], weights[k]) for k in weights)


def test_non_finite_weights_are_refused(saved) -> None:
    path, weights, _ = saved
    weights = dict(weights, W1=np.full_like(weights["W1"], np.nan))
    np.savez(path.with_suffix(".npz"), **weights)
    with pytest.raises(DataError, match="W1 holds NaN or inf weights"):
        load_model(path)
