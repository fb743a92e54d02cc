"""A target distribution (data.target): dev and test from it, train and train-dev from the primary
source, normalization from training rows only, mismatched sources refused; the duplicates policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.io import load_npy
from tests.data.helpers import blobs, save_npz, write_params

TARGET = {
    "data": {"source": "npz", "path": "data/raw/web.npz", "target": {"source": "npz", "path": "data/raw/phone.npz"}},
    "split": {"train": 0.6, "dev": 0.2, "test": 0.2, "train_dev": 0.1},
}


def cli(*argv: str) -> int:
    return main([*argv, "--params", "params.yaml"])


def make_sources(repo: Path, shift: float = 40.0, target_shape: tuple[int, ...] = (4, 4, 1)) -> None:
    X, y = blobs(300, 2, (4, 4, 1), seed=1)
    save_npz(repo / "data/raw/web.npz", X, y, classes=np.array(["cat", "dog"]))
    Xt, yt = blobs(120, 2, target_shape, seed=2)
    Xt = np.clip(Xt.astype(np.float64) + shift, 0, 255).astype(np.uint8)  # a darker/brighter camera
    save_npz(repo / "data/raw/phone.npz", Xt, 1 - yt, classes=np.array(["dog", "cat"]))  # other class order


def prepared_origin() -> np.ndarray:
    return load_npy("data/prepared/origin.npy", mmap=False)


def rows_of(name: str) -> set[bytes]:
    return {r.tobytes() for r in load_npy(f"data/split/X_{name}.npy", mmap=False)}


def test_dev_and_test_come_only_from_the_target_and_train_only_from_the_primary(repo: Path) -> None:
    make_sources(repo)
    write_params(repo, TARGET)
    assert cli("prepare") == 0 and cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    assert report["sizes"] == {"train": 270, "train_dev": 30, "dev": 60, "test": 60}
    assert report["target"]["n_examples"] == 120 and report["target"]["in_train"] == 0
    assert report["distributions"]["dev"] == "target" and report["distributions"]["train_dev"] == "primary"
    X, origin = load_npy("data/prepared/X.npy", mmap=False), prepared_origin()
    assert origin.tolist() == [0] * 300 + [1] * 120
    doc = json.loads(Path("data/split/normalizer.json").read_text())
    from pipeline.data.normalize import Normalizer

    norm = Normalizer.from_dict(doc)
    as_split = {norm.transform(r[None]).astype(np.float32).tobytes() for r in X}
    target_rows = {norm.transform(r[None]).astype(np.float32).tobytes() for r in X[origin == 1]}
    primary_rows = as_split - target_rows
    assert rows_of("dev") | rows_of("test") <= target_rows  # no primary example in dev or test
    assert rows_of("train") | rows_of("train_dev") <= primary_rows  # no target example in training
    # class names were matched by name: the target's "cat" (its label 0 in its own file) is cat here
    y_dev = load_npy("data/split/y_dev.npy")
    assert sorted(set(y_dev.tolist())) == [0, 1] and doc["classes"] == ["cat", "dog"]


def test_part_of_the_target_goes_to_training_when_asked(repo: Path) -> None:
    make_sources(repo)
    write_params(repo, {**TARGET, "split": {**TARGET["split"], "target_train": 0.5}})
    assert cli("prepare") == 0 and cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    assert report["target"]["in_train"] == 60 and report["sizes"]["dev"] == 30 and report["sizes"]["test"] == 30
    assert report["sizes"]["train"] == 270 + 60


def test_the_normalizer_ignores_target_pixels(repo: Path) -> None:
    make_sources(repo, shift=40.0)
    write_params(repo, TARGET)
    assert cli("prepare") == 0 and cli("split") == 0
    before = Path("data/split/normalizer.json").read_bytes()
    train_before = load_npy("data/split/X_train.npy", mmap=False)
    make_sources(repo, shift=90.0)  # every target pixel changes
    assert cli("prepare") == 0 and cli("split") == 0
    assert Path("data/split/normalizer.json").read_bytes() == before
    np.testing.assert_array_equal(load_npy("data/split/X_train.npy"), train_before)


def test_mismatched_image_shapes_exit_3_naming_both_files(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_sources(repo, target_shape=(4, 4, 3))
    write_params(repo, TARGET)
    assert cli("prepare") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "phone.npz" in err and "web.npz" in err and "(4, 4, 3)" in err


def test_a_target_class_unknown_to_the_primary_source_exits_3(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_sources(repo)
    Xt, yt = blobs(40, 2, (4, 4, 1), seed=5)
    save_npz(repo / "data/raw/phone.npz", Xt, yt, classes=np.array(["cat", "bird"]))
    write_params(repo, TARGET)
    assert cli("prepare") == 3
    err = capsys.readouterr().err
    assert "['bird']" in err and "phone.npz" in err and "web.npz" in err


def test_later_copies_of_an_image_are_dropped_before_splitting(repo: Path) -> None:
    X, y = blobs(200, 2, (4, 4, 1), seed=3)
    X[150:170], y[150:170] = X[:20], y[:20]  # 20 exact copies
    save_npz(repo / "data/raw/d.npz", X, y)
    write_params(repo, {"data": {"source": "npz", "path": "data/raw/d.npz"}, "split": TARGET["split"]})
    assert cli("prepare") == 0 and cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    assert report["dropped_duplicates"] == 20 and sum(report["sizes"].values()) == 180
    assert report["duplicates"]["count"] == 0  # nothing leaks across splits
    write_params(
        repo, {"data": {"source": "npz", "path": "data/raw/d.npz"}, "split": {**TARGET["split"], "duplicates": "keep"}}
    )
    assert cli("split") == 0
    kept = json.loads(Path("reports/split.json").read_text())
    assert kept["dropped_duplicates"] == 0 and sum(kept["sizes"].values()) == 200 and kept["duplicates"]["count"] > 0


def test_a_target_image_already_in_the_primary_source_is_dropped_from_the_target(repo: Path) -> None:
    make_sources(repo)
    web = np.load(repo / "data/raw/web.npz")
    phone = np.load(repo / "data/raw/phone.npz")
    Xt, yt = phone["X"].copy(), phone["y"].copy()
    Xt[:10] = web["X"][:10]
    yt[:10] = 1 - web["y"][:10]  # same class names, other order in this file
    save_npz(repo / "data/raw/phone.npz", Xt, yt, classes=phone["classes"])
    write_params(repo, TARGET)
    assert cli("prepare") == 0 and cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    assert report["dropped_duplicates"] == 10 and report["sizes"]["dev"] + report["sizes"]["test"] == 110


def test_the_course_hdf5_test_file_can_be_the_target(repo: Path) -> None:
    """The course's train file as the primary source and its test file as the target, not pooled."""
    import h5py

    X, y = blobs(120, 2, (3, 3, 3), seed=4)
    for name, prefix, rows in (("train", "train", slice(0, 80)), ("test", "test", slice(80, 120))):
        with h5py.File(repo / f"data/raw/{name}_catvnoncat.h5", "w") as f:
            f[f"{prefix}_set_x"], f[f"{prefix}_set_y"] = X[rows], y[rows]
            f["list_classes"] = np.array([b"non-cat", b"cat"])
    data = {"source": "hdf5", "path": "data/raw/train_catvnoncat.h5"}
    write_params(repo, {"data": {**data, "target": {"source": "hdf5", "path": "data/raw/test_catvnoncat.h5"}}})
    assert cli("prepare") == 0 and cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    assert report["sizes"]["train"] == 80 and report["sizes"]["dev"] + report["sizes"]["test"] == 40
    write_params(repo, {"data": {**data, "test_path": "data/raw/test_catvnoncat.h5"}})  # the default: pooled
    assert cli("prepare") == 0 and cli("split") == 0
    pooled = json.loads(Path("reports/split.json").read_text())
    assert "target" not in pooled and sum(pooled["sizes"].values()) == 120


# --- the train stage with a target: dev may be worse than the majority class -----------------------


def swapped_target(repo: Path) -> None:
    """The primary source's distribution with the class names the other way round: a network that
    fits train gets nearly every target example wrong, worse than always answering one class."""
    X, y = blobs(420, 2, (4, 4, 1), seed=1)
    save_npz(repo / "data/raw/web.npz", X[:300], y[:300], classes=np.array(["cat", "dog"]))
    save_npz(repo / "data/raw/phone.npz", X[300:], 1 - y[300:], classes=np.array(["cat", "dog"]))


def test_a_network_worse_on_the_target_than_the_majority_class_is_saved_for_the_diagnosis(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a target such a dev error means the network learned nothing (exit 5, tests/stages); with
    one it is the data mismatch the report is to diagnose, so train judges learning on train."""
    swapped_target(repo)
    write_params(repo, {**TARGET, "train": {"epochs": 20, "use_study_best": False}, "model": {"hidden_layers": [8]}})
    assert cli("prepare") == 0 and cli("split") == 0
    assert json.loads(Path("data/split/normalizer.json").read_text())["distributions"]["dev"] == "target"
    assert main(["train", "--params", "params.yaml", "--no-tracking"]) == 0
    m = json.loads(Path("reports/train.json").read_text())
    assert m["train_error"] < 0.05 and m["dev_error"] > 0.9 and m["majority_dev_error"] == 0.5
    assert Path("models/final.npz").exists()
    out = capsys.readouterr().out
    assert "dev error" in out and "no better than the most frequent training class" in out and "data mismatch" in out


def test_with_a_target_a_network_that_learned_nothing_on_train_still_exits_5(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swapped_target(repo)
    stuck = {"train": {"epochs": 1, "use_study_best": False, "learning_rate": 1.0e-12}, "model": {"init": "zeros"}}
    write_params(repo, {**TARGET, **stuck})
    assert cli("prepare") == 0 and cli("split") == 0
    assert main(["train", "--params", "params.yaml", "--no-tracking"]) == 5
    err = capsys.readouterr().err
    assert "train error" in err and "no better than always predicting the most frequent training class" in err
    assert not Path("models").exists()
