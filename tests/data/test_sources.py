"""Each data source loads what it should and refuses bad input with a DataError naming the problem."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.config import params_from_dict
from pipeline.data.sources import digits_arrays, load_dataset
from pipeline.errors import DataError
from tests.data.helpers import blobs, save_npz


def data_params(**data: object):
    return params_from_dict({"data": data}).data


def load(root: Path, seed: int = 0, **data: object):
    return load_dataset(data_params(**data), seed, root)


# --- digits and synthetic ------------------------------------------------------------------------


def test_digits_is_ten_classes_of_8x8_with_range_16(repo: Path) -> None:
    ds = load(repo)
    assert ds.images.shape == (1797, 8, 8, 1)
    assert ds.classes == tuple(str(k) for k in range(10))
    assert ds.pixel_range == 16.0 and ds.images.max() == 16
    assert np.bincount(ds.labels).min() > 170  # every digit present


def test_digits_are_scikit_learns_read_without_importing_it(repo: Path) -> None:
    script = "import sys; from pipeline.data import sources; sources.digits_arrays(); print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # the ~3 s import is not paid by the prepare stage

    from sklearn.datasets import load_digits

    X, y = digits_arrays()
    X_sk, y_sk = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, X_sk)
    np.testing.assert_array_equal(y, y_sk)
    assert X.dtype == X_sk.dtype and y.dtype == y_sk.dtype


def test_positive_class_makes_one_vs_rest(repo: Path) -> None:
    full = load(repo)
    ds = load(repo, positive_class=3)
    assert ds.classes == ("not 3", "3")
    np.testing.assert_array_equal(ds.labels, (full.labels == 3).astype(np.int64))


def test_unknown_positive_class_is_refused(repo: Path) -> None:
    with pytest.raises(DataError, match="positive_class 'cat' is not one of the classes"):
        load(repo, positive_class="cat")


def test_synthetic_is_seeded_and_shaped(repo: Path) -> None:
    spec = {"m": 90, "height": 5, "width": 3, "channels": 2, "n_classes": 3}
    a, b = load(repo, 7, source="synthetic", synthetic=spec), load(repo, 7, source="synthetic", synthetic=spec)
    c = load(repo, 8, source="synthetic", synthetic=spec)
    assert a.images.shape == (90, 5, 3, 2) and a.images.dtype == np.uint8
    assert np.bincount(a.labels).tolist() == [30, 30, 30]
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


# --- hdf5 ----------------------------------------------------------------------------------------


def write_h5(path: Path, prefix: str, X: np.ndarray, y: np.ndarray, classes: list[bytes] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f[f"{prefix}_set_x"] = X
        f[f"{prefix}_set_y"] = y
        if classes is not None:
            f["list_classes"] = np.array(classes)
    return path


def test_hdf5_course_layout_merges_train_and_test(repo: Path) -> None:
    X, y = blobs(20, 2, (3, 3, 3))
    write_h5(repo / "data/raw/train.h5", "train", X[:14], y[:14], [b"non-cat", b"cat"])
    write_h5(repo / "data/raw/test.h5", "test", X[14:], y[14:].reshape(1, -1), [b"non-cat", b"cat"])  # (1, m) labels
    ds = load(repo, source="hdf5", path="data/raw/train.h5", test_path="data/raw/test.h5")
    assert ds.classes == ("non-cat", "cat") and ds.pixel_range == 255.0
    np.testing.assert_array_equal(ds.images, X)
    np.testing.assert_array_equal(ds.labels, y)
    cats = load(repo, source="hdf5", path="data/raw/train.h5", positive_class="cat")
    assert cats.classes == ("not cat", "cat")


def test_hdf5_without_the_expected_datasets_is_refused(repo: Path) -> None:
    with h5py.File(repo / "data/raw/other.h5", "w") as f:
        f["images"] = np.zeros((4, 2, 2, 1))
    with pytest.raises(DataError, match=r"expected datasets train_set_x and train_set_y, found \['images'\]"):
        load(repo, source="hdf5", path="data/raw/other.h5")


def test_corrupt_hdf5_is_refused(repo: Path) -> None:
    (repo / "data/raw/broken.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DataError, match=re.escape("broken.h5: not a readable HDF5 file")):
        load(repo, source="hdf5", path="data/raw/broken.h5")


# --- image folder --------------------------------------------------------------------------------


def write_images(folder: Path, per_class: dict[str, int], size: tuple[int, int] = (6, 4), mode: str = "RGB") -> None:
    """Write per_class[name] random images of size (width, height) into folder/<name>/."""
    rng = np.random.default_rng(0)
    for name, n in per_class.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name / f"{i}.png")


def test_folder_reads_one_class_per_subfolder(repo: Path) -> None:
    write_images(repo / "data/raw/imgs", {"cat": 3, "dog": 2})
    ds = load(repo, source="folder", path="data/raw/imgs")
    assert ds.classes == ("cat", "dog")
    assert ds.images.shape == (5, 4, 6, 3)  # (m, height, width, channels)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    first = np.asarray(Image.open(repo / "data/raw/imgs/cat/0.png"))
    np.testing.assert_array_equal(ds.images[0], first)


def test_folder_resizes_to_image_size(repo: Path) -> None:
    write_images(repo / "data/raw/imgs", {"a": 1}, size=(6, 4))
    write_images(repo / "data/raw/imgs", {"b": 1}, size=(9, 9))
    ds = load(repo, source="folder", path="data/raw/imgs", image_size=[5, 7])
    assert ds.images.shape == (2, 5, 7, 3)


def test_folder_mixed_sizes_without_resizing_is_refused(repo: Path) -> None:
    write_images(repo / "data/raw/imgs", {"a": 1}, size=(6, 4))
    write_images(repo / "data/raw/imgs", {"b": 1}, size=(9, 9))
    with pytest.raises(DataError, match=r"b/0.png: image is 9x9 but a/0.png is 4x6; set data.image_size"):
        load(repo, source="folder", path="data/raw/imgs")


@pytest.mark.parametrize(
    "content",
    [b"", b"this is text, not a PNG", "truncated"],
    ids=["zero-bytes", "text-named-png", "truncated-png"],
)
def test_folder_corrupt_image_is_refused(repo: Path, content: bytes | str) -> None:
    write_images(repo / "data/raw/imgs", {"a": 2, "b": 1}, size=(32, 32))
    bad = repo / "data/raw/imgs/b/bad.png"
    if content == "truncated":
        content = (repo / "data/raw/imgs/a/0.png").read_bytes()[:60]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"bad.png: not a readable image"):
        load(repo, source="folder", path="data/raw/imgs")


def test_folder_missing_or_empty_is_refused(repo: Path) -> None:
    with pytest.raises(DataError, match=re.escape("data.path 'data/raw/nope' not found")):
        load(repo, source="folder", path="data/raw/nope")
    (repo / "data/raw/empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load(repo, source="folder", path="data/raw/empty")
    (repo / "data/raw/empty/cat").mkdir()
    with pytest.raises(DataError, match="class folder is empty"):
        load(repo, source="folder", path="data/raw/empty")


def test_folder_single_class_is_refused(repo: Path) -> None:
    write_images(repo / "data/raw/imgs", {"only": 3})
    with pytest.raises(DataError, match=r"only one class \(only\)"):
        load(repo, source="folder", path="data/raw/imgs")


def test_symlinked_image_is_refused(repo: Path) -> None:
    write_images(repo / "data/raw/imgs", {"a": 1, "b": 1})
    secret = repo / "outside.png"
    secret.write_bytes((repo / "data/raw/imgs/a/0.png").read_bytes())
    os.symlink(secret, repo / "data/raw/imgs/b/evil.png")
    with pytest.raises(DataError, match=re.escape("evil.png: symlinks and paths outside")):
        load(repo, source="folder", path="data/raw/imgs")


def test_symlinked_class_folder_or_data_path_is_refused(repo: Path) -> None:
    write_images(repo / "elsewhere", {"a": 1, "b": 1})
    os.symlink(repo / "elsewhere", repo / "data/raw/linked")
    with pytest.raises(DataError, match="linked is a symlink"):
        load(repo, source="folder", path="data/raw/linked")
    write_images(repo / "data/raw/imgs", {"a": 1})
    os.symlink(repo / "elsewhere/b", repo / "data/raw/imgs/b")
    with pytest.raises(DataError, match="symlinks are refused"):
        load(repo, source="folder", path="data/raw/imgs")


@pytest.mark.parametrize("path", ["data/raw/../../etc", "/etc/passwd", "params.yaml", "data/raw/../secrets.npz"])
def test_paths_leaving_the_data_folder_are_refused(repo: Path, path: str) -> None:
    with pytest.raises(DataError, match="outside the data folder data/raw/"):
        load(repo, source="npz", path=path)


# --- npz -----------------------------------------------------------------------------------------


def test_npz_with_named_classes(repo: Path) -> None:
    X, y = blobs(30, 3, (2, 2, 1))
    save_npz(repo / "data/raw/a.npz", X, y, classes=np.array(["x", "y", "z"]))
    ds = load(repo, source="npz", path="data/raw/a.npz")
    assert ds.classes == ("x", "y", "z") and ds.pixel_range == 255.0
    np.testing.assert_array_equal(ds.labels, y)


def test_npz_string_labels_become_sorted_classes(repo: Path) -> None:
    X = np.random.default_rng(0).random((6, 3))
    save_npz(repo / "data/raw/a.npz", X, np.array(["dog", "cat", "dog", "cat", "cat", "dog"]))
    ds = load(repo, source="npz", path="data/raw/a.npz")
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [1, 0, 1, 0, 0, 1]
    assert ds.pixel_range == 1.0  # floats already in [0, 1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_nan_or_inf_is_refused(repo: Path, bad: float) -> None:
    X = np.ones((10, 4))
    X[7, 2] = bad
    save_npz(repo / "data/raw/a.npz", X, np.arange(10) % 2)
    with pytest.raises(DataError, match=r"1 examples hold NaN or inf \(first: row 7\)"):
        load(repo, source="npz", path="data/raw/a.npz")


def test_npz_pickled_object_array_is_refused(repo: Path) -> None:
    np.savez(repo / "data/raw/a.npz", X=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match=re.escape("not a readable .npz without pickle")):
        load(repo, source="npz", path="data/raw/a.npz")


def test_npz_missing_array_and_mismatched_lengths(repo: Path) -> None:
    np.savez(repo / "data/raw/a.npz", X=np.zeros((4, 2)))
    with pytest.raises(DataError, match="missing array 'y'"):
        load(repo, source="npz", path="data/raw/a.npz")
    np.savez(repo / "data/raw/b.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"X has shape \(4, 2\) but y has 3 labels"):
        load(repo, source="npz", path="data/raw/b.npz")


def test_npz_single_class_is_refused(repo: Path) -> None:
    save_npz(repo / "data/raw/a.npz", np.zeros((5, 2)), np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="only one class"):
        load(repo, source="npz", path="data/raw/a.npz")


def test_an_image_size_too_large_for_memory_exits_3_before_allocating(repo: Path, capsys) -> None:
    """data.image_size [20000, 20000] is refused with the estimate before a single image is decoded."""
    from PIL import Image

    from pipeline.cli import main
    from tests.data.helpers import write_params

    for k, name in enumerate(("a", "b")):
        (repo / "data/raw/images" / name).mkdir(parents=True)
        Image.fromarray(np.full((4, 4, 3), 40 * k, dtype=np.uint8)).save(repo / "data/raw/images" / name / "0.png")
    source = {"source": "folder", "path": "data/raw/images", "image_size": [200000, 200000]}
    write_params(repo, {"data": source})
    assert main(["prepare", "--params", "params.yaml"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2 images at data.image_size 200000x200000 needs about 223.5 GiB in memory" in err
    assert "are available; lower data.image_size" in err


def test_the_memory_estimate_uses_what_is_available(monkeypatch) -> None:
    from pipeline.data import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    memory.check_fits(2**29, "half", "fine")
    with pytest.raises(DataError, match=r"needs about 2.0 GiB in memory but 1.0 GiB are available; bring less"):
        memory.check_fits(2**31, "this", "bring less")


# --- synthetic: label noise sets the Bayes error, images stream ----------------------------------------


def _old_synthetic(m: int, shape: tuple[int, ...], n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The generator before label noise and streaming, verbatim: label_noise 0 must give its bytes."""
    rng = np.random.default_rng([seed, 0x5EED])
    prototypes = rng.uniform(0, 255, size=(n_classes, *shape))
    labels = rng.permutation(np.arange(m) % n_classes).astype(np.int64)
    images = np.empty((m, *shape), dtype=np.uint8)
    chunk = max(1, 2**22 // max(1, int(np.prod(shape))))
    for i in range(0, m, chunk):
        y = labels[i : i + chunk]
        noisy = prototypes[y] + rng.normal(0.0, 60.0, size=(len(y), *shape))
        images[i : i + chunk] = np.clip(noisy, 0, 255)
    return images, labels


def test_synthetic_without_label_noise_gives_the_earlier_bytes(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.data import sources

    monkeypatch.setattr(sources, "SYNTHETIC_CHUNK_BYTES", 2**16)  # 83 images a chunk; the old code made 5349
    spec = {"m": 400, "height": 28, "width": 28, "channels": 1, "n_classes": 10}  # five generation chunks
    ds = load(repo, 5, source="synthetic", synthetic=spec)
    images, labels = _old_synthetic(400, (28, 28, 1), 10, 5)
    np.testing.assert_array_equal(np.asarray(ds.images), images)
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.images[40:200], images[40:200])  # across chunk boundaries
    np.testing.assert_array_equal(ds.images[10:20], images[10:20])  # behind the stream: it restarts


def test_synthetic_label_noise_is_the_bayes_error(repo: Path) -> None:
    """The nearest-prototype classifier (the Bayes classifier: an image says its class) errs on exactly
    the flipped labels; on held-out images its error is label_noise within a 99.9% binomial interval."""
    noise, m, k = 0.2, 20_000, 10
    spec = {"m": m, "height": 8, "width": 8, "channels": 1, "n_classes": k}
    clean = load(repo, 3, source="synthetic", synthetic=spec)
    noisy = load(repo, 3, source="synthetic", synthetic={**spec, "label_noise": noise})
    np.testing.assert_array_equal(np.asarray(noisy.images), np.asarray(clean.images))  # the images do not move
    flipped = noisy.labels != clean.labels
    assert flipped.sum() == round(noise * m)  # exactly that fraction, each to another class
    assert np.bincount(noisy.labels, minlength=k).min() > 0.9 * m / k  # still about balanced

    X = np.asarray(clean.images).reshape(m, -1).astype(np.float64)
    half = m // 2  # class means from the first half's images and true classes; scored on the second half
    means = np.stack([X[:half][clean.labels[:half] == c].mean(axis=0) for c in range(k)])
    nearest = (((X[half:, None, :] - means[None]) ** 2).sum(axis=2)).argmin(axis=1)
    assert np.array_equal(nearest, clean.labels[half:])  # the images alone identify their class
    error = float(np.mean(nearest != noisy.labels[half:]))
    n = m - half
    assert abs(error - noise) <= 3.29 * math.sqrt(noise * (1 - noise) / n), error


def test_label_noise_must_leave_the_true_class_the_most_frequent() -> None:
    from pipeline.config import ConfigError, params_from_dict

    with pytest.raises(ConfigError, match=r"data.synthetic.label_noise must lie in \[0, 0.5\) for 2 classes"):
        params_from_dict({"data": {"source": "synthetic", "synthetic": {"n_classes": 2, "label_noise": 0.5}}})
    params_from_dict({"data": {"source": "synthetic", "synthetic": {"n_classes": 10, "label_noise": 0.85}}})


def test_synthetic_separation_one_is_the_default_and_below_one_shrinks_the_prototypes(repo: Path) -> None:
    spec = {"m": 600, "height": 8, "width": 8, "channels": 1, "n_classes": 3}
    default = load(repo, 2, source="synthetic", synthetic=spec)
    one = load(repo, 2, source="synthetic", synthetic={**spec, "separation": 1.0})
    np.testing.assert_array_equal(np.asarray(one.images), np.asarray(default.images))
    near = load(repo, 2, source="synthetic", synthetic={**spec, "separation": 0.25})
    np.testing.assert_array_equal(near.labels, default.labels)  # the labels do not move, only the images
    spread = lambda ds: float(np.abs(ds.images.prototypes - 127.5).mean())  # noqa: E731
    assert spread(near) == pytest.approx(0.25 * spread(default))


def test_synthetic_bayes_error_below_separation_one_matches_the_nearest_prototype_error(repo: Path) -> None:
    """The computed Bayes error exceeds label_noise by the overlap, and the nearest-prototype classifier
    (near the Bayes classifier: the clipping at 0 and 255 is all that separates them) errs about as often."""
    from pipeline.data.sources import synthetic_bayes_error

    noise, m, k = 0.1, 3000, 10
    spec = {"m": m, "height": 28, "width": 28, "channels": 1, "n_classes": k, "label_noise": noise}
    ds = load(repo, 4, source="synthetic", synthetic={**spec, "separation": 0.1})
    bayes, se = synthetic_bayes_error(ds.images, noise, sample=m)
    assert bayes > noise + 0.03 and 0 < se < 0.01, (bayes, se)
    X = np.asarray(ds.images).reshape(m, -1).astype(np.float64)
    protos = ds.images.prototypes.reshape(k, -1)
    nearest = (X**2).sum(axis=1)[:, None] - 2 * X @ protos.T + (protos**2).sum(axis=1)[None, :]
    error = float(np.mean(nearest.argmin(axis=1) != ds.labels))
    assert abs(error - bayes) <= 3.29 * math.sqrt(bayes * (1 - bayes) / m) + 3 * se, (error, bayes)
    clean, _ = synthetic_bayes_error(load(repo, 4, source="synthetic", synthetic=spec).images, noise)
    assert clean == pytest.approx(noise, abs=1e-6)  # far-apart prototypes: the label noise alone


def test_synthetic_separation_must_lie_in_zero_to_one() -> None:
    from pipeline.config import ConfigError

    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"data.synthetic.separation must lie in \(0, 1\]"):
            params_from_dict({"data": {"source": "synthetic", "synthetic": {"separation": bad}}})


def test_prepare_records_the_computed_bayes_error_below_separation_one(repo: Path) -> None:
    from pipeline.config import load_params
    from pipeline.stages import prepare as prepare_stage
    from tests.data.helpers import write_params

    spec = {"m": 2000, "height": 28, "width": 28, "channels": 1, "n_classes": 10, "label_noise": 0.1}
    write_params(repo, {"data": {"source": "synthetic", "synthetic": {**spec, "separation": 0.1}}})
    meta = prepare_stage.prepare(load_params("params.yaml"))["synthetic"]
    assert meta["label_noise"] == 0.1 and meta["separation"] == 0.1
    assert meta["bayes_error"] > 0.13 and 0 < meta["bayes_error_se"] < 0.02, meta


def test_prepare_streams_the_synthetic_source_and_records_its_bayes_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the images nor the float32 rows are ever whole in memory: prepare holds one chunk."""
    import tracemalloc

    from pipeline.config import load_params
    from pipeline.data import sources
    from pipeline.stages import prepare as prepare_stage
    from tests.data.helpers import write_params

    monkeypatch.setattr(sources, "SYNTHETIC_CHUNK_BYTES", 2**16)
    monkeypatch.setattr(prepare_stage, "BLOCK_PIXELS", 2**16)
    spec = {"m": 8_000, "height": 28, "width": 28, "channels": 1, "n_classes": 10, "label_noise": 0.1}
    write_params(repo, {"data": {"source": "synthetic", "synthetic": spec}})
    params = load_params("params.yaml")
    tracemalloc.start()
    try:
        meta = prepare_stage.prepare(params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    uint8_bytes = 8_000 * 784  # 6.3 MB; the float32 rows are 4x that
    assert peak < uint8_bytes / 3, f"peak {peak / 1e6:.1f} MB against {uint8_bytes / 1e6:.1f} MB of images"
    assert meta["synthetic"] == {"label_noise": 0.1, "bayes_error": 0.1}
    X = np.load("data/prepared/X.npy", mmap_mode="r")
    images, _ = _old_synthetic(8_000, (28, 28, 1), 10, params.seed)
    np.testing.assert_array_equal(X[-100:], images[-100:].reshape(100, -1).astype(np.float32))
