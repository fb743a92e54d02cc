"""Data sources: each turns ``data.*`` params into raw images, integer labels and class names.

Sources: ``digits`` (scikit-learn's bundled 8x8 digits, offline), ``hdf5`` (the course's
``train_catvnoncat.h5`` layout), ``folder`` (one subfolder of PNG/JPEG files per class), ``npz``
(arrays ``X`` and ``y``) and ``synthetic`` (seeded, any size). Files must lie inside ``data/raw/``
(the folder the prepare stage declares as its DVC dependency); symlinks are refused.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import DataParams
from pipeline.data.memory import check_fits
from pipeline.errors import DataError, first_line
from pipeline.paths import RAW_DIR

__all__ = [
    "DATA_DIR",
    "IMAGE_SUFFIXES",
    "LOADERS",
    "Dataset",
    "digits_arrays",
    "load_dataset",
    "load_target",
    "resolve_data_path",
    "synthetic_bayes_error",
]

DATA_DIR = RAW_DIR  # relative to the repository root
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Dataset:
    """Raw examples as loaded: ``images`` is (m, h, w, c) (or (m, n) for plain feature arrays)."""

    images: np.ndarray | SyntheticImages  # the synthetic source generates its images when they are read
    labels: np.ndarray  # (m,) int64 in 0..len(classes)-1
    classes: tuple[str, ...]
    pixel_range: float  # what "scale" divides by: 16 for digits, 255 for 8-bit images
    source: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[1:])


def load_dataset(data: DataParams, seed: int, root: str | Path = ".") -> Dataset:
    """Load the configured source, check it, and map labels to one-vs-rest if data.positive_class is set."""
    ds = LOADERS[data.source](data, seed, Path(root))
    _check_values(ds)
    if data.positive_class is not None:
        ds = _one_vs_rest(ds, data.positive_class)
    present = np.unique(ds.labels)
    if present.size < 2:
        only = ds.classes[int(present[0])] if present.size else "none"
        raise DataError(f"{ds.source}: only one class ({only}) in the data; a classifier needs at least two")
    return ds


def _path(data: DataParams, root: Path) -> Path:
    return resolve_data_path(data.path, root, "data.path")


def _synthetic(data: DataParams, seed: int, root: Path) -> Dataset:
    s = data.synthetic
    return _make_synthetic(s.m, (s.height, s.width, s.channels), s.n_classes, seed, s.label_noise, s.separation)


def _hdf5(data: DataParams, seed: int, root: Path) -> Dataset:
    test = resolve_data_path(data.test_path, root, "data.test_path") if data.test_path else None
    return _load_hdf5(_path(data, root), test)


# data.source -> loader(data params, seed, repository root); the keys are config.SOURCES.
LOADERS: dict[str, Callable[[DataParams, int, Path], Dataset]] = {
    "digits": lambda data, seed, root: _load_digits(),
    "hdf5": _hdf5,
    "folder": lambda data, seed, root: _load_folder(_path(data, root), data.image_size),
    "npz": lambda data, seed, root: _load_npz(_path(data, root)),
    "synthetic": _synthetic,
}


def load_target(data: DataParams, primary: Dataset, root: str | Path = ".") -> Dataset | None:
    """The ``data.target`` source, checked against the primary one and labelled with its classes.

    Image size, channels and pixel range must agree (a mismatch names both files and what
    differs); classes are matched by name, so the target may hold a subset of the primary's
    classes in any order, but no class the model is not trained on.
    """
    t = data.target
    if t is None:
        return None
    root = Path(root)
    path = resolve_data_path(t.path, root, "data.target.path")
    if t.source == "hdf5":
        images, labels, classes = _read_h5(path, "test")  # the course's test file is its natural target
        ds = Dataset(images, labels, classes, _pixel_range(images), "hdf5")
    elif t.source == "folder":
        ds = _load_folder(path, t.image_size or data.image_size)
    else:
        ds = _load_npz(path)
    _check_values(ds)
    if data.positive_class is not None:
        ds = _one_vs_rest(ds, data.positive_class)
    where = f"{path} (data.target) and {data.path or data.source} (data.path)"
    if ds.image_shape != primary.image_shape:
        raise DataError(
            f"{where}: images are {ds.image_shape} and {primary.image_shape}; bring one size or set image_size"
        )
    if ds.pixel_range != primary.pixel_range:
        raise DataError(f"{where}: pixel ranges {ds.pixel_range:g} and {primary.pixel_range:g} differ; save both alike")
    unknown = sorted(set(ds.classes) - set(primary.classes))
    if unknown:
        raise DataError(f"{where}: target classes {unknown} are not among the primary classes {list(primary.classes)}")
    to_primary = np.array([primary.classes.index(c) for c in ds.classes], dtype=np.int64)
    return Dataset(ds.images, to_primary[ds.labels], primary.classes, primary.pixel_range, ds.source)


def resolve_data_path(value: str | None, root: Path, key: str) -> Path:
    """Return ``root / value`` checked: it exists and lies in data/raw/ with no symlink on the way."""
    if not value:
        raise DataError(f"{key} is empty; set it to a file or folder under {DATA_DIR}/")
    base = Path(os.path.normpath((root / DATA_DIR).absolute()))
    path = Path(os.path.normpath((root / value).absolute()))  # an absolute value replaces root here
    if not path.is_relative_to(base):
        raise DataError(f"{key} '{value}' is outside the data folder {DATA_DIR}/; move the data there")
    probe = base
    for part in path.relative_to(base).parts:
        probe = probe / part
        if probe.is_symlink():
            raise DataError(f"{key} '{value}': {probe.name} is a symlink; copy the real data into {DATA_DIR}/")
    if not path.exists():
        raise DataError(f"{key} '{value}' not found; put the data under {DATA_DIR}/ or fix the path")
    if not path.resolve().is_relative_to(base.resolve()):  # e.g. a hard-to-see link higher up
        raise DataError(f"{key} '{value}' resolves outside the data folder {DATA_DIR}/")
    return root / path.relative_to(os.path.normpath(root.absolute()))  # relative stays relative, for messages


# --- sources -------------------------------------------------------------------------------------


def _load_digits() -> Dataset:
    X, y = digits_arrays()
    images = X.astype(np.uint8).reshape(-1, 8, 8, 1)  # (1797, 8, 8, 1), values 0..16
    return Dataset(images, y, tuple(str(c) for c in range(10)), 16.0, "digits")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as ``load_digits(return_X_y=True)`` gives them: X (1797, 64), y (1797,).

    Read from the CSV that scikit-learn ships (one row per image: 64 pixels 0..16, then the
    label) without importing scikit-learn, which takes about 3 s and pulls in SciPy: that was
    most of the prepare stage's run time and of every process that loads the default data.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the installed package; imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.source digits needs scikit-learn installed; pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except OSError as e:
        why = first_line(e)
        raise DataError(f"{path}: cannot read scikit-learn's digits ({why}); reinstall scikit-learn") from None
    return rows[:, :-1], rows[:, -1].astype(np.int64)


SYNTHETIC_NOISE_SD = 60.0  # pixel noise around each class's prototype (pixel values 0..255)
SYNTHETIC_MID = 127.5  # the grey that ``separation`` shrinks the prototypes towards
SYNTHETIC_CHUNK_BYTES = 2**22  # pixels generated at a time: float64 temporaries of ~32 MB (any size: same bytes)


def _make_synthetic(
    m: int, shape: tuple[int, int, int], n_classes: int, seed: int, label_noise: float = 0.0, separation: float = 1.0
) -> Dataset:
    """Noisy copies of one random prototype image per class, with ``label_noise`` of the labels wrong.

    Any size, fully seeded. The images are generated chunk by chunk when read (``SyntheticImages``),
    so a million of them never sit in memory at once. Each image is its class's prototype (pixels
    uniform in 0..255) plus Gaussian noise of sd 60, clipped to 0..255: at 64 pixels or more the
    prototypes lie many noise sds apart, so an image alone says its class (the nearest prototype).

    ``label_noise`` sets the Bayes error exactly: that fraction of the rows (``round(label_noise *
    m)``, chosen at random) has its label replaced by a uniformly random *other* class. The best
    any classifier can do is to answer the image's class (the Bayes classifier: the nearest
    prototype), and it is then wrong on exactly those rows, so its expected error on any split is
    ``label_noise``. A noise on the labels rather than more overlap between the images was chosen
    because its Bayes error is known in closed form at any image size and class count (an overlap's
    would have to be integrated numerically), and because it is what the report diagnoses against:
    ``report.human_error: <label_noise>`` makes the avoidable bias exact. It must stay below
    (K-1)/K for K classes, where the true class is no longer the most frequent label of its images.
    The flipped rows come from their own random stream, so ``label_noise: 0`` gives the images and
    labels of earlier versions byte for byte.

    ``separation`` (in (0, 1], default 1: the earlier bytes) shrinks every prototype towards mid-grey
    by that factor, the noise staying the same, so the classes' images overlap: below about 0.2 at
    784 pixels an image no longer says its class for sure, the task is no longer trivially
    separable, and networks differ in how close to the Bayes error they get (and can overfit). The
    Bayes error then exceeds ``label_noise`` by the overlap; ``synthetic_bayes_error`` computes it
    from the generating model.
    """
    if m < 2 * n_classes:
        raise DataError(f"data.synthetic.m={m} is too small for {n_classes} classes; use at least {2 * n_classes}")
    rng = np.random.default_rng([seed, 0x5EED])  # its own stream, so the split's draws stay independent
    prototypes = rng.uniform(0, 255, size=(n_classes, *shape))
    if separation != 1.0:  # skipped at 1, where the arithmetic would round some prototypes
        prototypes = SYNTHETIC_MID + separation * (prototypes - SYNTHETIC_MID)
    clean = rng.permutation(np.arange(m) % n_classes).astype(np.int64)  # every class present, balanced
    images = SyntheticImages(prototypes, clean, rng)
    labels = clean
    if label_noise > 0:
        flips = np.random.default_rng([seed, 0x5EED, 1])  # not the images' stream: they stay the same
        rows = flips.permutation(m)[: round(label_noise * m)]
        labels = clean.copy()
        labels[rows] = (clean[rows] + flips.integers(1, n_classes, size=len(rows))) % n_classes  # another class
    classes = tuple(f"class_{k}" for k in range(n_classes))
    return Dataset(images, labels, classes, 255.0, "synthetic")


def synthetic_bayes_error(images: SyntheticImages, label_noise: float, sample: int = 5000) -> tuple[float, float]:
    """The Bayes error of synthetic data and its standard error, from the model that generated it.

    For each of the first ``sample`` images the exact posterior of its true class: a pixel of mean
    mu becomes v with probability Phi((v + 1 - mu) / sd) - Phi((v - mu) / sd), the ends taking the
    clipped tails (the generator clips to 0..255 and truncates to uint8), pixels independent, classes
    equally likely. With label noise e over K classes a label's posterior is (1 - e) p + e / (K - 1)
    (1 - p) for the class posterior p, so the Bayes classifier still answers the likeliest class and
    errs with probability 1 - that posterior. The Bayes error is the mean of that over the images:
    an estimate of an expectation over images, not a count of errors, so its standard error is small
    (about 0.001 at 5,000 images of 784 pixels and separation 0.12).
    """
    from scipy.special import log_ndtr  # only here: prepare imports this module for every source

    protos = images.prototypes.reshape(len(images.prototypes), -1)
    k, n_x = protos.shape
    X = images[: min(sample, len(images))].reshape(-1, n_x).astype(np.intp)
    edges = np.arange(1, 256, dtype=np.float64)  # pixel v covers [v, v + 1); 0 and 255 take the tails
    ll = np.empty((len(X), k))
    for c in range(k):
        z = (edges[None, :] - protos[c][:, None]) / SYNTHETIC_NOISE_SD  # (n_x, 255)
        cdf = np.exp(log_ndtr(z))
        cdf = np.concatenate([np.zeros((n_x, 1)), cdf, np.ones((n_x, 1))], axis=1)  # (n_x, 257)
        log_p = np.log(np.maximum(np.diff(cdf, axis=1), 1e-300))  # (n_x, 256)
        ll[:, c] = log_p[np.arange(n_x)[None, :], X].sum(axis=1)
    post = np.exp(ll - ll.max(axis=1, keepdims=True))
    p_max = (post / post.sum(axis=1, keepdims=True)).max(axis=1)
    risk = 1.0 - ((1.0 - label_noise) * p_max + label_noise / (k - 1) * (1.0 - p_max))
    return float(risk.mean()), float(risk.std(ddof=1) / np.sqrt(len(risk))) if len(risk) > 1 else 0.0


class SyntheticImages:
    """The synthetic images (m, h, w, c) uint8, generated on demand in fixed chunks of one random stream.

    Reads in order (what prepare does) generate each chunk once; a read before the last chunk
    generated starts the stream again from the first. Slices of rows are supported, and
    ``np.asarray`` gives all of them (what small data and tests use).
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, prototypes: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        self._prototypes, self._labels, self._rng = prototypes, labels, rng
        self._start = rng.bit_generator.state  # the stream's state before the first chunk's noise
        self.shape = (len(labels), *prototypes.shape[1:])
        self.ndim = len(self.shape)
        self.nbytes = int(np.prod(self.shape))
        self.chunk = max(1, SYNTHETIC_CHUNK_BYTES // max(1, int(np.prod(self.shape[1:]))))
        self._next = 0  # the chunk the stream generates next
        self._last: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def prototypes(self) -> np.ndarray:
        """One image per class (float64, pixel values 0..255): the mean of its images before clipping."""
        return self._prototypes

    def _block(self, k: int) -> np.ndarray:
        if self._last is not None and self._last[0] == k:
            return self._last[1]
        if k < self._next:  # behind the stream: start it again
            self._rng.bit_generator.state = self._start
            self._next = 0
        while self._next <= k:
            i = self._next * self.chunk
            y = self._labels[i : i + self.chunk]
            noisy = self._prototypes[y] + self._rng.normal(0.0, SYNTHETIC_NOISE_SD, size=(len(y), *self.shape[1:]))
            self._last = (self._next, np.clip(noisy, 0, 255).astype(np.uint8))
            self._next += 1
        return self._last[1]

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            return np.asarray(self)[key]
        start, stop, _ = key.indices(len(self))
        parts = []
        for k in range(start // self.chunk, -(-stop // self.chunk) if stop > start else 0):
            block, base = self._block(k), k * self.chunk
            parts.append(block[max(start - base, 0) : stop - base])
        return np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), dtype=self.dtype)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _load_hdf5(path: Path, test_path: Path | None) -> Dataset:
    """Read the course's layout: ``train_set_x`` (m, h, w, c) uint8, ``train_set_y``, ``list_classes``."""
    images, labels, classes = _read_h5(path, "train")
    if test_path is not None:
        x2, y2, classes2 = _read_h5(test_path, "test")
        if x2.shape[1:] != images.shape[1:]:
            raise DataError(f"{test_path}: images are {x2.shape[1:]}, but {path.name} has {images.shape[1:]}")
        if classes2 != classes:
            raise DataError(f"{test_path}: list_classes {classes2} differ from {path.name}'s {classes}")
        images, labels = np.concatenate([images, x2]), np.concatenate([labels, y2])
    return Dataset(images, labels, classes, _pixel_range(images), "hdf5")


def _read_h5(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            # the course names datasets train_set_* and test_set_*; accept either in either file
            found = next((p for p in (prefix, "test" if prefix == "train" else "train") if f"{p}_set_x" in f), None)
            if found is None or f"{found}_set_y" not in f:
                raise DataError(f"{path}: expected datasets {prefix}_set_x and {prefix}_set_y, found {keys}")
            x = f[f"{found}_set_x"]
            check_fits(
                int(np.prod(x.shape)) * x.dtype.itemsize, f"{path} {found}_set_x {x.shape}", "bring fewer images"
            )
            images = np.asarray(x[()])
            raw_y = np.asarray(f[f"{found}_set_y"][()]).ravel()  # the course stores (m,) or (1, m)
            names = [_text(c) for c in np.asarray(f["list_classes"][()]).ravel()] if "list_classes" in f else None
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable HDF5 file ({first_line(e)})") from None
    if images.ndim < 2 or len(images) != len(raw_y):
        raise DataError(f"{path}: {found}_set_x has {images.shape}, {found}_set_y has {len(raw_y)} labels")
    if not np.issubdtype(raw_y.dtype, np.integer):
        raise DataError(f"{path}: {found}_set_y must hold integer labels, got {raw_y.dtype}")
    if names is None:
        labels, classes = _encode(raw_y)
        return images, labels, classes
    if raw_y.size and (raw_y.min() < 0 or raw_y.max() >= len(names)):
        raise DataError(f"{path}: labels must lie in 0..{len(names) - 1} to index list_classes {names}")
    return images, raw_y.astype(np.int64), tuple(names)


def _load_folder(folder: Path, image_size: tuple[int, int] | None) -> Dataset:
    """One subfolder per class; every image resized to image_size, or all required to share one size."""
    if not folder.is_dir():
        raise DataError(f"data.path '{folder}' is not a folder; the folder source needs one subfolder per class")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for p in entries:
        if p.is_symlink():
            raise DataError(f"{p}: symlinks are refused in the data folder; copy the real files in")
        if not p.is_dir():
            raise DataError(f"{p}: expected only class subfolders in {folder}, found a file")
    if not entries:
        raise DataError(f"{folder}: no class subfolders; put the images in {folder}/<class>/*.png")
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[Path, tuple[int, int]] | None = None
    listed = [sorted(p for p in d.iterdir() if not p.name.startswith(".")) for d in entries]
    n_files = sum(len(files) for files in listed)
    if image_size is not None:  # known before decoding anything: colour images are the worst case
        size = f"{n_files} images at data.image_size {image_size[0]}x{image_size[1]}"
        check_fits(n_files * image_size[0] * image_size[1] * 3, size, "lower data.image_size or bring fewer images")
    for k, (class_dir, files) in enumerate(zip(entries, listed, strict=True)):
        if not files:
            raise DataError(f"{class_dir}: class folder is empty; add images or remove it")
        for f in files:
            if f.is_symlink() or not f.resolve().is_relative_to(folder.resolve()):
                raise DataError(f"{f}: symlinks and paths outside {folder} are refused")
            if f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{f}: not a PNG or JPEG file; only {', '.join(IMAGE_SUFFIXES)} are read")
            a = _read_image(f, image_size)
            if first is None:
                first = (f, a.shape[:2])
                check_fits(n_files * a.size, f"{n_files} images of {a.shape[0]}x{a.shape[1]}", "set data.image_size")
            elif a.shape[:2] != first[1]:
                raise DataError(
                    f"{f}: image is {a.shape[0]}x{a.shape[1]} but {first[0].relative_to(folder)} is"
                    f" {first[1][0]}x{first[1][1]};"
                    " set data.image_size to resize"
                )
            arrays.append(a[..., None] if a.ndim == 2 else a)
            labels.append(k)
    if len({a.shape[2] for a in arrays}) > 1:  # mixed grayscale and colour: colour wins
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    classes = tuple(p.name for p in entries)
    return Dataset(np.stack(arrays), np.asarray(labels, dtype=np.int64), classes, 255.0, "folder")


def _read_image(f: Path, image_size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image to uint8 (h, w) or (h, w, 3); corrupt, truncated or huge files raise DataError."""
    from PIL import Image

    bad = (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse images that could exhaust memory
            with Image.open(f) as im:
                im.load()  # decode now, so truncated or corrupt files fail here
                im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
                if image_size is not None:
                    im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
    except bad as e:
        raise DataError(f"{f}: not a readable image ({first_line(e)}); replace or remove it") from None


def _load_npz(path: Path) -> Dataset:
    """Arrays ``X`` (m, ...) and ``y`` (m,); optional ``classes`` (names) and ``pixel_range``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("X", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing array {missing[0]!r}; an .npz source needs X and y (found {f.files})")
            images, raw_y = f["X"], f["y"].ravel()
            names = tuple(str(c) for c in f["classes"].ravel()) if "classes" in f.files else None
            pixel_range = float(f["pixel_range"]) if "pixel_range" in f.files else None
    except DataError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as e:  # includes pickled (object) arrays
        raise DataError(f"{path}: not a readable .npz without pickle ({first_line(e)})") from None
    if images.ndim < 2 or len(images) != len(raw_y):
        raise DataError(f"{path}: X has shape {images.shape} but y has {len(raw_y)} labels")
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise DataError(f"{path}: X must be numeric, got dtype {images.dtype}")
    if names is not None and np.issubdtype(raw_y.dtype, np.integer):
        if raw_y.size and (raw_y.min() < 0 or raw_y.max() >= len(names)):
            raise DataError(f"{path}: y must lie in 0..{len(names) - 1} to index classes")
        labels, classes = raw_y.astype(np.int64), names
    else:
        labels, classes = _encode(raw_y)
    if pixel_range is not None and not (np.isfinite(pixel_range) and pixel_range > 0):
        raise DataError(f"{path}: pixel_range must be a positive number, got {pixel_range}")
    return Dataset(images, labels, classes, pixel_range or _pixel_range(images), "npz")


# --- checks and label mapping --------------------------------------------------------------------


def _check_values(ds: Dataset) -> None:
    if len(ds.images) == 0:
        raise DataError(f"{ds.source}: the data has 0 examples")
    if np.issubdtype(ds.images.dtype, np.inexact):
        bad = ~np.isfinite(ds.images.reshape(len(ds.images), -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(f"{ds.source}: {rows.size} examples hold NaN or inf (first: row {rows[0]}); clean the data")


def _one_vs_rest(ds: Dataset, positive: int | str) -> Dataset:
    """Relabel to binary: 1 = data.positive_class (matched by class name first, then by index)."""
    names = list(ds.classes)
    if str(positive) in names:
        k = names.index(str(positive))
    elif isinstance(positive, int) and 0 <= positive < len(names):
        k = positive
    else:
        raise DataError(f"data.positive_class {positive!r} is not one of the classes {names}")
    labels = (ds.labels == k).astype(np.int64)
    return Dataset(ds.images, labels, (f"not {names[k]}", names[k]), ds.pixel_range, ds.source)


def _encode(raw: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map arbitrary label values to 0..k-1 in sorted order; the values become the class names."""
    values, labels = np.unique(raw, return_inverse=True)
    return labels.astype(np.int64).ravel(), tuple(_text(v) for v in values)


def _pixel_range(images: np.ndarray) -> float:
    """The source's pixel range: 255 for 8-bit data, 1 for floats already in [0, 1], else the maximum."""
    if images.dtype == np.uint8:
        return 255.0
    high = float(np.abs(images).max()) if images.size else 1.0
    if not np.isfinite(high):
        return 1.0  # NaN/inf are reported by _check_values with a clearer message
    return 1.0 if high <= 1.0 else 255.0 if high <= 255.0 else high


def _text(value: object) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)
