"""The one typed, frozen view of ``params.yaml``.

``load_params`` is the only place that reads the file. Every section is a frozen dataclass; the
loader walks the type hints, so an unknown key, a missing section, or a value of the wrong type
fails on load with the key's dotted name. Numbers follow YAML 1.2 (``1e-3`` is a float, as
``dvc exp run -S`` writes it), where PyYAML alone would read text; a key given twice is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError

__all__ = ["ConfigError", "Params", "TrainParams", "load_params", "params_from_dict"]

# The choice lists, declared once. The config's Literal types are built from them; the tables that
# implement them (pipeline.nn's activations, initializers and optimizers, the data sources, the
# normalizers, the pruners) are keyed by the same names, and tests/test_architecture.py checks
# that every table has exactly these keys (pipeline.nn imports numpy only, so it cannot import them).
SOURCES = ("digits", "hdf5", "folder", "npz", "synthetic")
FILE_SOURCES = ("hdf5", "folder", "npz")  # the formats a target distribution can be brought in
DUPLICATE_POLICIES = ("drop", "keep")
NORMALIZE_MODES = ("scale", "standardize", "none")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
INITS = ("zeros", "random", "xavier", "he")
OPTIMIZERS = ("gd", "momentum", "adam")
DTYPES = ("float64", "float32")
PRUNERS = ("median", "hyperband", "none")

Source = Literal[SOURCES]
FileSource = Literal[FILE_SOURCES]
DuplicatePolicy = Literal[DUPLICATE_POLICIES]
NormalizeMode = Literal[NORMALIZE_MODES]
Activation = Literal[ACTIVATIONS]
Init = Literal[INITS]
Optimizer = Literal[OPTIMIZERS]
DType = Literal[DTYPES]
Pruner = Literal[PRUNERS]

DEFAULT_PARAMS = Path("params.yaml")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class SyntheticParams:
    m: int = 2000
    height: int = 8
    width: int = 8
    channels: int = 1
    n_classes: int = 2
    # the fraction of labels replaced by another class, uniformly: the data's Bayes error (sources.py)
    label_noise: float = 0.0
    # each prototype's distance from mid-grey, as a factor: below 1 the classes' images overlap (sources.py)
    separation: float = 1.0

    def __post_init__(self) -> None:
        _check(min(self.m, self.height, self.width, self.channels) >= 1, "data.synthetic sizes must be >= 1")
        _check(self.n_classes >= 2, "data.synthetic.n_classes must be >= 2")
        most = (self.n_classes - 1) / self.n_classes  # at this noise a label says nothing about its image
        _check(
            0.0 <= self.label_noise < most,
            f"data.synthetic.label_noise must lie in [0, {most:g}) for {self.n_classes} classes",
        )
        _check(0.0 < self.separation <= 1.0, "data.synthetic.separation must lie in (0, 1]")


@dataclass(frozen=True)
class TargetParams:
    """``data.target``: the distribution the model will serve (the course's "cat videos on a phone").

    Dev and test come from it only; train and train-dev from the primary source only, except the
    ``split.target_train`` fraction of target examples moved into training when target data is scarce.
    """

    source: FileSource
    path: str
    image_size: tuple[int, int] | None = None  # folder only, as data.image_size

    def __post_init__(self) -> None:
        if self.image_size is not None:
            _check(min(self.image_size) >= 1, "data.target.image_size must be positive [height, width]")


@dataclass(frozen=True)
class DataParams:
    source: Source = "digits"
    path: str | None = None
    test_path: str | None = None
    positive_class: int | str | None = None
    image_size: tuple[int, int] | None = None
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    target: TargetParams | None = None  # null: dev and test are drawn from the same pool as train

    def __post_init__(self) -> None:
        if self.source in ("hdf5", "folder", "npz"):
            _check(self.path is not None, f"data.path is required for data.source '{self.source}'")
        if self.image_size is not None:
            _check(min(self.image_size) >= 1, "data.image_size must be positive [height, width]")


@dataclass(frozen=True)
class PrepareParams:
    normalize: NormalizeMode = "standardize"


@dataclass(frozen=True)
class SplitParams:
    train: float = 0.98
    dev: float = 0.01
    test: float = 0.01
    train_dev: float = 0.0
    duplicates: DuplicatePolicy = "drop"  # drop: later copies of an identical example are removed before splitting
    target_train: float = 0.0  # with data.target: the fraction of target examples moved into training

    def __post_init__(self) -> None:
        for name in ("train", "dev", "test"):
            _check(0.0 < getattr(self, name) < 1.0, f"split.{name} must lie strictly between 0 and 1")
        total = self.train + self.dev + self.test
        _check(math.isclose(total, 1.0, abs_tol=1e-9), f"split.train + split.dev + split.test must be 1, got {total:g}")
        _check(0.0 <= self.train_dev < 1.0, "split.train_dev must lie in [0, 1)")
        _check(0.0 <= self.target_train < 1.0, "split.target_train must lie in [0, 1)")


@dataclass(frozen=True)
class ModelParams:
    hidden_layers: tuple[int, ...] = (64, 32)
    hidden_activation: Activation = "relu"
    init: Init = "he"
    dtype: DType = (
        "float32"  # trials, the final model and the report train in float32 (docs/benchmarks.md); gradcheck float64
    )

    def __post_init__(self) -> None:
        _check(all(n >= 1 for n in self.hidden_layers), "model.hidden_layers must be positive unit counts")


@dataclass(frozen=True)
class TrainParams:
    """The ``train:`` section: how the final network (and every trial, for the keys the study does
    not search) is trained. ``pipeline.study.space.fit_options`` turns it into ``nn.FitOptions``."""

    learning_rate: float = 0.001
    epochs: int = 60
    batch_size: int = 64  # 0: full batch
    optimizer: Optimizer = "adam"
    beta1: float = 0.9  # momentum, and Adam's first moment
    beta2: float = 0.999  # Adam's second moment
    epsilon: float = 1e-8
    l2_lambda: float = 0.0
    keep_prob: float = 1.0
    lr_decay: float = 0.0  # learning_rate / (1 + lr_decay * (epoch - 1))
    patience: int = 0  # early stopping on dev cost after this many epochs without improvement; 0: off
    use_study_best: bool = True  # the train stage takes the study's best trial over the keys above
    # BLAS threads per training process (trials, the final model, the report's retraining); None:
    # chosen per network, the workers and the free cores (pipeline.threads). Speed only: no part
    # of a study's identity, so changing it never starts a new study.
    blas_threads: int | None = None

    def __post_init__(self) -> None:
        _check(self.learning_rate > 0, "train.learning_rate must be > 0")
        _check(self.epochs >= 1, "train.epochs must be >= 1")
        _check(self.batch_size >= 0, "train.batch_size must be >= 0 (0 means full batch)")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1 and train.beta2 must lie in [0, 1)")
        _check(self.epsilon > 0, "train.epsilon must be > 0")
        _check(self.l2_lambda >= 0, "train.l2_lambda must be >= 0")
        _check(0 < self.keep_prob <= 1, "train.keep_prob must lie in (0, 1]")
        _check(self.lr_decay >= 0 and self.patience >= 0, "train.lr_decay and train.patience must be >= 0")
        _check(
            self.blas_threads is None or self.blas_threads >= 1, "train.blas_threads must be >= 1 (or null: automatic)"
        )


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    allow_off: bool = False  # adds an "off" (0.0) choice beside the log-uniform range

    def __post_init__(self) -> None:
        _check(0 < self.low < self.high, f"a search range needs 0 < low < high, got [{self.low}, {self.high}]")


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def __post_init__(self) -> None:
        _check(1 <= self.low <= self.high, f"a search range needs 1 <= low <= high, got [{self.low}, {self.high}]")


@dataclass(frozen=True)
class SpaceParams:
    learning_rate: FloatRange = FloatRange(1e-4, 3e-2)
    n_layers: IntRange = IntRange(1, 3)
    n_units: IntRange = IntRange(8, 128)
    l2_lambda: FloatRange = FloatRange(1e-4, 1.0, allow_off=True)
    keep_prob: FloatRange = FloatRange(0.6, 1.0)
    optimizer: tuple[Optimizer, ...] | None = None  # None: keep train.optimizer
    batch_size: tuple[int, ...] | None = None  # None: keep train.batch_size
    epochs: IntRange | None = None  # None: keep train.epochs

    def __post_init__(self) -> None:
        _check(self.keep_prob.high <= 1.0, "tune.space.keep_prob.high must be <= 1")


@dataclass(frozen=True)
class NoiseFloorParams:
    """``tune.stop_at_noise_floor``: stop once the last ``patience`` finished trials improved the best
    dev error by less than ``factor`` standard errors of that error (more trials would chase noise)."""

    patience: int = 10
    factor: float = 1.0

    def __post_init__(self) -> None:
        _check(self.patience >= 2, "tune.stop_at_noise_floor.patience must be >= 2")
        _check(self.factor > 0, "tune.stop_at_noise_floor.factor must be > 0")


@dataclass(frozen=True)
class TuneParams:
    n_trials: int = 20
    timeout: float | None = None
    n_workers: int = 1
    storage: str | None = None
    study_name: str | None = None  # None: named after the data (see data_name); the stored study adds a fingerprint
    pruner: Pruner = "median"
    startup_trials: int = 5
    space: SpaceParams = field(default_factory=SpaceParams)
    cv_folds: int = 0  # 0: score trials on the dev split; k >= 2: k-fold cross-validation over the train split
    stop_at_noise_floor: NoiseFloorParams | None = None  # null: run every trial of the cap

    def __post_init__(self) -> None:
        _check(self.n_trials >= 1 and self.n_workers >= 1, "tune.n_trials and tune.n_workers must be >= 1")
        _check(self.timeout is None or self.timeout > 0, "tune.timeout must be > 0 or null")
        _check(self.cv_folds == 0 or self.cv_folds >= 2, "tune.cv_folds must be 0 (off) or at least 2")
        _check(self.study_name is None or bool(self.study_name.strip()), "tune.study_name must not be empty")
        _check(
            self.storage is None or not _has_password(self.storage),
            "tune.storage holds a password, which would be written into dvc.lock; remove it from the URL and "
            "set PGPASSWORD or a ~/.pgpass entry instead",
        )


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


@dataclass(frozen=True)
class ReportParams:
    human_error: float = 0.005
    confidence: float = 0.95
    learning_curve_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    tolerance: float = 0.02
    stability_top_k: int = 3  # the best configurations retrained over several seeds
    stability_seeds: int = 3  # seeds per configuration; 0 or 1 turns the stability check off

    def __post_init__(self) -> None:
        _check(0.0 <= self.human_error < 1.0, "report.human_error must lie in [0, 1)")
        _check(0.0 < self.confidence < 1.0, "report.confidence must lie in (0, 1)")
        _check(
            all(0 < f <= 1 for f in self.learning_curve_fractions), "report.learning_curve_fractions must lie in (0, 1]"
        )
        _check(self.tolerance >= 0, "report.tolerance must be >= 0")
        _check(self.stability_top_k >= 1 and self.stability_seeds >= 0, "report.stability_top_k must be >= 1")


@dataclass(frozen=True)
class TrackingParams:
    experiment: str | None = None
    model_name: str | None = None  # None: named after the data, like the study
    model_alias: str = "champion"


@dataclass(frozen=True)
class Params:
    seed: int = 42
    data: DataParams = field(default_factory=DataParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    tune: TuneParams = field(default_factory=TuneParams)
    report: ReportParams = field(default_factory=ReportParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


# --- loading -----------------------------------------------------------------------------------


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params file; raise ConfigError naming the file and key on any problem."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}; keep one of them") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root or pass --params") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}; fix the syntax") from None
    return params_from_dict(raw if raw is not None else {}, source=str(path))


class DuplicateKeyError(yaml.YAMLError):
    pass


# libyaml's parser where PyYAML was built with it (the wheels are): the same documents, about ten
# times faster than the pure-Python one, and every stage and remedy check reads params.yaml.
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """PyYAML keeps the last of two equal keys without a word; a params file must not."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(f"key '{key}' appears twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats such as 1e-3 and 5e-05 (no dot): PyYAML implements YAML 1.1, which reads them as text.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def params_from_dict(raw: Any, source: str = "params") -> Params:
    """Build Params from a plain mapping (as read from YAML), validating every key and type.

    Names left null (``tune.study_name``, ``tracking.model_name``) are filled in from the data, so
    a study of cat photos is never called "digits": ``<data name>-mlp``.
    """
    try:
        params = _build(Params, raw, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    default = f"{data_name(params.data)}-mlp"
    tune = dataclasses.replace(params.tune, study_name=params.tune.study_name or default)
    tracking = dataclasses.replace(params.tracking, model_name=params.tracking.model_name or default)
    return dataclasses.replace(params, tune=tune, tracking=tracking)


def data_name(data: DataParams) -> str:
    """A short name for the data set: the source for digits and synthetic, else the file or folder name
    (``data/raw/cats.h5`` -> ``cats``), with the positive class for one-vs-rest tasks."""
    name = data.source if data.path is None or data.source in ("digits", "synthetic") else Path(data.path).stem
    if data.positive_class is not None:
        name = f"{name}-{data.positive_class}-vs-rest"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.").lower()
    return slug or data.source


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}'; known keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            kwargs[f.name] = _coerce(hints[f.name], raw[f.name], f"{prefix}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key '{prefix}{f.name}'")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


@functools.cache  # resolving the string annotations is most of a build's time; the classes never change
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{key}: {_describe(value)} matches none of {_type_name(tp)}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}; got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be text, got {_describe(value)}")
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")  # a bug in this module


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "")
