"""params.yaml is read once, into frozen typed sections; bad files fail on load, by key."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, Params, load_params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_params_file_loads_into_frozen_sections() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "digits"
    assert (params.split.train, params.split.dev, params.split.test) == (0.98, 0.01, 0.01)
    assert isinstance(params.model.hidden_layers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.learning_rate = 1.0  # type: ignore[misc]


def test_every_key_of_the_committed_file_is_read() -> None:
    """The file and the dataclasses describe the same keys: no key is silently ignored."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = load_params(REPO / "params.yaml")

    def walk(mapping: dict, obj: object, prefix: str) -> None:
        for key, value in mapping.items():
            assert hasattr(obj, key), f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, getattr(obj, key), f"{prefix}{key}.")

    walk(raw, params, "")


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"train": {"lr": 0.1}}, "unknown key 'train.lr'"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate must be a number, got str 'fast'"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
        ({"train": {"epochs": True}}, "train.epochs must be an integer"),
        ({"train": {"use_study_best": "yes"}}, "must be true or false"),
        ({"model": {"hidden_layers": [8, "x"]}}, r"model.hidden_layers\[1\] must be an integer"),
        ({"model": {"hidden_activation": "swish"}}, "must be one of relu"),
        ({"split": {"train": 0.9, "dev": 0.05, "test": 0.1}}, "must be 1"),
        ({"split": {"train": 1.0, "dev": 0.0, "test": 0.0}}, "strictly between"),
        ({"train": {"keep_prob": 0}}, "keep_prob"),
        ({"train": {"optimizer": "sgd"}}, "optimizer"),
        ({"tune": {"space": {"learning_rate": {"low": 0.1, "high": 0.01}}}}, "low < high"),
        ({"data": {"source": "folder"}}, "data.path is required"),
        ({"train": {"learning_rate": float("nan")}}, "finite"),
        ({"train": []}, "train must be a mapping"),
        ({"train": {"blas_threads": 0}}, r"train.blas_threads must be >= 1 \(or null: automatic\)"),
        ({"train": {"blas_threads": "two"}}, "train.blas_threads must be an integer"),
    ],
)
def test_bad_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        params_from_dict(raw, "params.yaml")
    assert str(info.value).startswith("params.yaml: ")
    assert "\n" not in str(info.value)


def test_missing_and_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("train: {learning_rate: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "params.yaml"
    empty.write_text("")
    params = load_params(empty)
    assert params.tune.study_name == params.tracking.model_name == "digits-mlp"  # named after the default data
    assert dataclasses.replace(params, tune=Params().tune, tracking=Params().tracking) == Params()


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ({"source": "folder", "path": "data/raw/Cat Photos"}, "cat-photos-mlp"),
        (
            {"source": "hdf5", "path": "data/raw/train_catvnoncat.h5", "positive_class": 1},
            "train_catvnoncat-1-vs-rest-mlp",
        ),
        ({"source": "synthetic"}, "synthetic-mlp"),
    ],
)
def test_study_and_model_names_follow_the_data(data: dict, name: str) -> None:
    params = params_from_dict({"data": data})
    assert params.tune.study_name == params.tracking.model_name == name
    named = params_from_dict({"data": data, "tune": {"study_name": "mine"}, "tracking": {"model_name": "m"}})
    assert (named.tune.study_name, named.tracking.model_name) == ("mine", "m")


def test_a_duplicated_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain:\n  epochs: 5\n  learning_rate: 0.1\n  epochs: 7\n")
    with pytest.raises(ConfigError, match=r"params.yaml: key 'epochs' appears twice \(lines 3 and 5\)"):
        load_params(path)


def test_a_password_in_the_storage_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        params_from_dict({"tune": {"storage": "postgresql+psycopg2://optuna:secret@db:5432/studies"}})
    assert params_from_dict({"tune": {"storage": "postgresql+psycopg2://optuna@db:5432/studies"}}).tune.storage


def test_exponents_without_a_dot_are_numbers_as_in_yaml_1_2(tmp_path: Path) -> None:
    """dvc exp run -S 'train.learning_rate=5e-05' writes 5e-05, which plain PyYAML reads as text."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "train:\n  learning_rate: 5e-05\n  l2_lambda: 1E3\n"
        "tune:\n  space:\n    learning_rate: {low: 1e-4, high: 3.0e-2}\n"
    )
    params = load_params(path)
    assert params.train.learning_rate == 5e-05 and params.train.l2_lambda == 1000.0
    assert params.tune.space.learning_rate.low == 1e-4
