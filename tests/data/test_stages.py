"""The prepare and split stages through the command line: outputs, leakage, bad input, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import load_params
from pipeline.data.split import split_rows
from pipeline.data.store import load_normalizer
from pipeline.io import load_npy
from tests.data.helpers import REPO, blobs, run_module, save_npz, tree_bytes, write_params

NPZ = {"data": {"source": "npz", "path": "data/raw/d.npz"}, "split": {"train": 0.6, "dev": 0.2, "test": 0.2}}


def cli(*argv: str) -> int:
    return main([*argv, "--params", "params.yaml"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_prepare_and_split_write_the_contracted_files(repo: Path) -> None:
    write_params(repo, {"split": {"train_dev": 0.1}})
    assert cli("prepare") == 0
    X, y = load_npy("data/prepared/X.npy"), load_npy("data/prepared/y.npy")
    meta = json.loads(Path("data/prepared/meta.json").read_text())
    assert X.dtype == np.float32 and X.shape == (1797, 64) and X.flags.c_contiguous
    assert isinstance(X, np.memmap) and y.dtype == np.int64
    assert meta["image_shape"] == [8, 8, 1] and meta["pixel_range"] == 16.0 and meta["classes"][3] == "3"

    assert cli("split") == 0
    report = json.loads(Path("reports/split.json").read_text())
    sizes = report["sizes"]
    assert sum(sizes.values()) == 1797 and sizes["dev"] == sizes["test"] == 18 and sizes["train_dev"] == 176
    assert sum(report["class_counts"]["train"].values()) == sizes["train"]
    assert report["duplicates"]["count"] == 0
    for name, n in sizes.items():
        Xs, ys = load_npy(f"data/split/X_{name}.npy"), load_npy(f"data/split/y_{name}.npy")
        assert Xs.shape == (n, 64) and Xs.dtype == np.float32 and ys.shape == (n,)
    Xt = load_npy("data/split/X_train.npy")
    used = np.abs(Xt).sum(axis=0) > 0
    np.testing.assert_allclose(Xt[:, used].mean(axis=0), 0.0, atol=1e-5)  # standardized with train statistics


def test_no_leakage_dev_and_test_pixels_do_not_touch_train(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing every dev/test pixel changes nothing in the train features or the normalizer statistics."""
    write_params(repo)
    assert cli("prepare") == 0 and cli("split") == 0
    train_before = load_npy("data/split/X_train.npy", mmap=False)
    stats_before = Path("data/split/normalizer.json").read_bytes()
    test_before = load_npy("data/split/X_test.npy", mmap=False)

    y = load_npy("data/prepared/y.npy", mmap=False)
    params = load_params("params.yaml")
    X = load_npy("data/prepared/X.npy", mmap=False).copy()
    rows, hashes, _ = split_rows(X, y, params.split, params.seed)
    held_out = np.concatenate([rows["dev"], rows["test"]])
    X[held_out] = 16.0 - X[held_out]  # invert those images
    np.save("data/prepared/X.npy", X)
    # Membership follows content, so inverted images would be new examples: keep the old keys to
    # ask only whether the normalizer and train features ignore the held-out pixels.
    monkeypatch.setattr("pipeline.data.split.row_hashes", lambda _X: hashes)
    assert cli("split") == 0

    np.testing.assert_array_equal(load_npy("data/split/X_train.npy"), train_before)
    assert Path("data/split/normalizer.json").read_bytes() == stats_before
    assert not np.array_equal(load_npy("data/split/X_test.npy"), test_before)  # the change did reach test


@pytest.mark.parametrize(("mode", "low", "high"), [("scale", 0.0, 1.0), ("none", 0.0, 16.0)])
def test_normalize_modes(repo: Path, mode: str, low: float, high: float) -> None:
    write_params(repo, {"prepare": {"normalize": mode}})
    assert cli("prepare") == 0 and cli("split") == 0
    X = load_npy("data/split/X_train.npy")
    assert X.min() == low and X.max() == high
    normalizer, doc = load_normalizer()
    assert normalizer.mode == mode and doc["classes"] == [str(k) for k in range(10)]


def test_synthetic_source_runs_through_both_stages(repo: Path) -> None:
    write_params(repo, {"data": {"source": "synthetic", "synthetic": {"m": 300, "n_classes": 3}}})
    assert cli("prepare") == 0 and cli("split") == 0
    assert json.loads(Path("reports/split.json").read_text())["sizes"]["train"] == 294


# --- bad input: one line, a non-zero exit code, nothing half-written -----------------------------


def test_missing_data_folder_exits_3_with_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_params(repo, {"data": {"source": "folder", "path": "data/raw/images"}})
    assert cli("prepare") == 3
    assert "data.path 'data/raw/images' not found" in one_error_line(capsys)
    assert not Path("data/prepared").exists()


def test_split_left_empty_exits_3(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_npz(repo / "data/raw/d.npz", *blobs(40))
    write_params(repo, {**NPZ, "split": {"train": 0.98, "dev": 0.01, "test": 0.01}})
    assert cli("prepare") == 0
    capsys.readouterr()
    assert cli("split") == 3
    assert "split.test leaves 0 of 40 examples" in one_error_line(capsys)
    assert not Path("data/split").exists() and not Path("reports/split.json").exists()


def test_fractions_not_summing_to_one_exit_2_through_the_stage(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_params(repo, {"split": {"train": 0.9, "dev": 0.1, "test": 0.1}})
    assert cli("split") == 2
    assert "split.train + split.dev + split.test must be 1, got 1.1" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data": {"sourse": "digits"}}, "unknown key 'data.sourse'"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate must be a number"),
        ({"split": {"train": "most"}}, "split.train must be a number"),
    ],
)
def test_bad_params_exit_2_with_one_line(
    repo: Path, overrides: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_params(repo, overrides)
    for stage in ("prepare", "split"):
        assert cli(stage) == 2
        assert message in one_error_line(capsys)
    assert not (repo / "data" / "prepared").exists()


def test_bad_params_exit_2_with_one_line_through_a_real_process(tmp_path: Path) -> None:
    """The exit status a shell sees, and no traceback: checked once in a process of its own."""
    write_params(tmp_path, {"data": {"sourse": "digits"}})
    for stage in ("prepare", "split"):
        done = run_module(tmp_path, stage)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "unknown key 'data.sourse'" in lines[0], done.stderr
    assert not (tmp_path / "data").exists()


def test_failed_run_keeps_previous_outputs(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = blobs(50)
    save_npz(repo / "data/raw/d.npz", X, y)
    write_params(repo, NPZ)
    assert cli("prepare") == 0 and cli("split") == 0
    prepared, split = tree_bytes(Path("data/prepared")), tree_bytes(Path("data/split"))
    report = Path("reports/split.json").read_bytes()

    bad = X.astype(np.float64)
    bad[3, 0, 0, 0] = np.nan
    save_npz(repo / "data/raw/d.npz", bad, y)
    assert cli("prepare") == 3
    assert "NaN or inf" in one_error_line(capsys)
    write_params(repo, {**NPZ, "split": {"train": 0.98, "dev": 0.01, "test": 0.01}})  # 0 test rows of 50
    assert cli("split") == 3
    assert tree_bytes(Path("data/prepared")) == prepared
    assert tree_bytes(Path("data/split")) == split
    assert Path("reports/split.json").read_bytes() == report
    assert sorted(p.name for p in Path("data").iterdir()) == ["prepared", "raw", "split"]  # no temporaries


KILL_MIDWAY = """
import os, signal, sys
import pipeline.io as io
real = io.atomic_save_npy
def save_then_die(path, array):
    real(path, array)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after some files of the new output were written
io.atomic_save_npy = save_then_die
import pipeline.stages.{stage} as stage
stage.atomic_save_npy = save_then_die
from pipeline.cli import main
sys.exit(main(["{stage}"]))
"""


@pytest.mark.parametrize("stage", ["prepare", "split"])
def test_killed_stage_leaves_previous_outputs_intact(repo: Path, stage: str) -> None:
    X, y = blobs(50)
    save_npz(repo / "data/raw/d.npz", X, y)
    write_params(repo, NPZ)
    assert cli("prepare") == 0 and cli("split") == 0
    before = tree_bytes(Path("data"))
    save_npz(repo / "data/raw/d.npz", 255 - X, y)  # new data, so new outputs would differ
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILL_MIDWAY.format(stage=stage)], env=env, cwd=repo, timeout=120)
    assert done.returncode == -signal.SIGKILL
    after = {k: v for k, v in tree_bytes(Path("data")).items() if not k.startswith(".")}
    before.pop("raw/d.npz"), after.pop("raw/d.npz")
    assert after == before  # the half-written new output lives only in a hidden temporary folder
    assert cli(stage) == 0  # the next run succeeds and sweeps the temporary away
    assert not [p for p in Path("data").iterdir() if p.name.startswith(".")]


def _split_members(root: Path) -> dict[str, set[bytes]]:
    """Each split's examples as a set of (raw content, label) fingerprints, whatever the row order."""
    X, y = load_npy(root / "data/prepared/X.npy", mmap=False), load_npy(root / "data/prepared/y.npy", mmap=False)
    params = load_params(root / "params.yaml")
    rows, hashes, _ = split_rows(X, y, params.split, params.seed)
    return {name: {hashes[i] + bytes([int(y[i])]) for i in idx} for name, idx in rows.items()}


def test_split_membership_does_not_depend_on_file_format_or_order(tmp_path: Path, monkeypatch) -> None:
    """The same images as an image folder and as course HDF5 (another order) land in the same splits."""
    import h5py
    from PIL import Image

    X, y = blobs(60, 2, (4, 4, 3), seed=3)
    classes = ["cat", "dog"]  # sorted, as the folder source names its classes
    split = {"train": 0.6, "dev": 0.2, "test": 0.2}
    folder, h5 = tmp_path / "folder", tmp_path / "h5"
    for root in (folder, h5):
        (root / "data/raw").mkdir(parents=True)
    order = np.random.default_rng(0).permutation(len(y))  # file names in another order than the HDF5 rows
    for rank, i in enumerate(order):
        path = folder / "data/raw/images" / classes[y[i]] / f"{rank:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(X[i]).save(path)
    with h5py.File(h5 / "data/raw/train.h5", "w") as f:
        f["train_set_x"], f["train_set_y"] = X, y
        f["list_classes"] = np.array([c.encode() for c in classes])
    write_params(folder, {"data": {"source": "folder", "path": "data/raw/images"}, "split": split})
    write_params(h5, {"data": {"source": "hdf5", "path": "data/raw/train.h5"}, "split": split})
    for root in (folder, h5):
        monkeypatch.chdir(root)
        assert cli("prepare") == 0 and cli("split") == 0
    a, b = _split_members(folder), _split_members(h5)
    assert a == b and len(a["dev"]) == 12 and len(a["train"]) == 36
    for name in ("train", "dev", "test"):  # and the split files themselves are identical
        assert (folder / f"data/split/X_{name}.npy").read_bytes() == (h5 / f"data/split/X_{name}.npy").read_bytes()
        assert (folder / f"data/split/y_{name}.npy").read_bytes() == (h5 / f"data/split/y_{name}.npy").read_bytes()
