"""Remedies are params.yaml changes that act: never the current value, never more data than exists,
and a next_command that DVC and pipeline.config both accept."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import Params, load_params, params_from_dict
from pipeline.paths import repo_root
from pipeline.report.changes import (
    as_raw,
    get_key,
    next_command,
    parse_command,
    proposed,
    same,
    with_changes,
    yaml_scalar,
)
from pipeline.report.diagnosis import diagnose
from pipeline.report.remedies import COMPARABLE, MIN_TRAIN_FRACTION, Remedy, describe, remedies
from pipeline.report.stats import estimate

HUMAN, TOL = 0.005, 0.02
PARAMS_YAML = repo_root(Path(__file__).parent) / "params.yaml"
BEST = {"learning_rate": 1e-3, "n_layers": 2, "n_units": 64, "l2_lambda": 1e-2, "keep_prob": 0.8}


def case(train: tuple[int, int], dev: tuple[int, int], test: tuple[int, int] | None = None):
    """A diagnosis from (errors, n) per split."""
    errors = {
        "train": estimate("train", train[0] / train[1], train[1]),
        "dev": estimate("dev", dev[0] / dev[1], dev[1]),
    }
    if test:
        errors["test"] = estimate("test", test[0] / test[1], test[1])
    return diagnose(errors, HUMAN, TOL)


def split_params(train: float, dev: float, test: float, **more: Any) -> Params:
    return params_from_dict({"split": {"train": train, "dev": dev, "test": test}, **more})


SIZES_456 = {"train": 274, "dev": 91, "test": 91}
CASES = {
    "high bias": (case((300, 2000), (330, 2000)), Params(), {"train": 2000, "dev": 2000, "test": 2000}),
    "high variance": (case((20, 2000), (200, 2000)), Params(), {"train": 2000, "dev": 2000, "test": 2000}),
    "both": (case((200, 2000), (500, 2000)), Params(), {"train": 2000, "dev": 2000, "test": 2000}),
    "good fit, tiny dev": (case((3, 1761), (0, 18), (0, 18)), Params(), {"train": 1761, "dev": 18, "test": 18}),
    "inconclusive": (case((17, 1761), (1, 18)), Params(), {"train": 1761, "dev": 18, "test": 18}),
    "456 photos, default split": (case((0, 446), (1, 5)), Params(), {"train": 446, "dev": 5, "test": 5}),
    "456 photos, 60/20/20": (case((0, 274), (3, 91)), split_params(0.6, 0.2, 0.2), SIZES_456),
}  # fmt: skip
ACTS = list(CASES)  # at 60/20/20 only k-fold scoring of the trials is left


@pytest.mark.parametrize("name", CASES)
def test_no_remedy_repeats_a_current_value_and_each_validates(name: str) -> None:
    diag, params, sizes = CASES[name]
    fixes, _ = remedies(diag, BEST, params, sizes)
    assert bool(fixes) == (name in ACTS)
    raw = as_raw(params)
    for r in fixes:
        assert r.set and all(not same(get_key(raw, k), v) for k, v in r.set.items()), r
        assert params_from_dict(with_changes(raw, r.set))  # a key Params lacks or an invalid value would raise
        text = describe(r, params)
        assert " -> " in text and all(f"{yaml_scalar(v)} -> {yaml_scalar(v)}" not in text for v in r.set.values())
    assert len({yaml.safe_dump(r.set) for r in fixes}) == len(fixes)  # each change once


def test_a_remedy_equal_to_the_current_range_is_dropped() -> None:
    # the refine remedy would set the learning-rate range to best/3 .. best*3: it already is that range
    params = params_from_dict({"tune": {"space": {"learning_rate": {"low": 3.33e-4, "high": 3.0e-3}}}})
    fixes, _ = remedies(case((3, 1761), (0, 900)), BEST, params, {"train": 1761, "dev": 900, "test": 18})
    assert not any("tune.space.learning_rate.low" in r.set for r in fixes)
    patient = params_from_dict(
        {"train": {"patience": 10}, "tune": {"space": {"l2_lambda": {"low": 1.0e-4, "high": 1.0}}}}
    )
    keys = {k for r in remedies(case((20, 2000), (200, 2000)), BEST, patient, CASES["both"][2])[0] for k in r.set}
    assert "train.patience" not in keys and "tune.space.l2_lambda.allow_off" not in keys  # both already there


def _splits(fixes: list[Remedy]) -> list[Remedy]:
    return [r for r in fixes if "split.dev" in r.set]


def test_a_small_data_set_gets_the_split_it_can_support() -> None:
    """456 images at the default 98/1/1 split: 5 dev images; a dev set resolving 2 points needs ~1500."""
    diag, params, sizes = CASES["456 photos, default split"]
    fixes, _ = remedies(diag, BEST, params, sizes)
    first = fixes[0]
    assert first.addresses == "dev_set" and first.set == {"split.dev": 0.2, "split.train": 0.79}
    total = sum(sizes.values())
    assert round(total * first.set["split.dev"]) == 91 <= total - sizes["test"]  # never more than exist
    assert "about 91 of the 456 examples" in first.why and "largest dev set it supports" in first.why
    assert "(±8.1 points)" in first.why  # the Wilson half-width of 18 errors in 91 (scipy: 0.0811)
    cv = fixes[1]  # then k-fold scoring of the trials over the 446 training examples
    assert cv.set == {"tune.cv_folds": 5} and cv.addresses == "trial_ranking" and "446 training examples" in cv.why
    for r in _splits(fixes):
        fractions = {**{"train": 0.98, "dev": 0.01, "test": 0.01}, **{k[6:]: v for k, v in r.set.items()}}
        assert abs(sum(fractions.values()) - 1) < 1e-9 and fractions["train"] >= MIN_TRAIN_FRACTION


def test_no_split_remedy_when_the_split_is_already_the_largest() -> None:
    diag, params, sizes = CASES["456 photos, 60/20/20"]
    fixes, notes = remedies(diag, BEST, params, sizes)
    assert _splits(fixes) == []  # never "split.dev 0.2 -> 0.2"
    assert [r.set for r in fixes] == [{"tune.cv_folds": 5}]  # what is left: rank the trials on all 274 train examples
    assert all("0.2 -> 0.2" not in describe(r, params) for r in fixes)
    assert any("already the most this data (456 examples) supports" in n for n in notes)


def test_train_dev_only_when_comparable_to_dev() -> None:
    _, params, sizes = CASES["456 photos, 60/20/20"]
    variance = case((0, 274), (30, 91))  # 33% dev error: a significant variance
    fixes, _ = remedies(variance, BEST, params, sizes)
    slice_ = next(r for r in fixes if "split.train_dev" in r.set)
    assert slice_.set == {"split.train_dev": 0.25}
    assert round(274 * 0.25) >= COMPARABLE * 91 and "about 68 examples (dev has 91)" in slice_.why
    # a train split too small for a slice of comparable size: none is offered, and a note says why
    fixes, notes = remedies(variance, BEST, params, {"train": 100, "dev": 91, "test": 91})
    assert not any("split.train_dev" in r.set for r in fixes)
    assert any("too few to compare with dev" in n for n in notes)


@pytest.mark.parametrize("name", ACTS)
def test_next_command_parses_into_keys_params_yaml_has(name: str) -> None:
    diag, params, sizes = CASES[name]
    fixes, _ = remedies(diag, BEST, params, sizes)
    command = next_command(fixes[0].set)
    words = shlex.split(command)
    assert words[:3] == ["dvc", "exp", "run"] and words[3::2] == ["-S"] * len(fixes[0].set)
    pairs = dict(w.split("=", 1) for w in words[4::2])
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    assert all(get_key(raw, k, None) is not None for k in pairs), pairs  # every key exists in params.yaml
    parsed = parse_command(command)
    assert all(same(parsed[k], v) for k, v in fixes[0].set.items())
    assert params_from_dict(with_changes(raw, parsed))  # params.yaml with the change applied validates


def test_next_command_through_dvc(tmp_path: Path) -> None:
    """DVC's own -S parser (Hydra's override grammar) writes values that load_params reads back."""
    from dvc.utils.hydra import apply_overrides

    changes = {
        "tune.space.l2_lambda.low": proposed(1.0e-05),
        "tune.space.learning_rate.low": proposed(1.0e-04 / 3),
        "tune.space.l2_lambda.allow_off": False,
        "split.dev": 0.2,
        "split.train": 0.79,
        "train.epochs": 120,
    }
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS_YAML, path)
    apply_overrides(path, shlex.split(next_command(changes))[4::2])
    loaded = as_raw(load_params(path))
    assert all(same(get_key(loaded, k), v) for k, v in changes.items())


def test_proposed_values_survive_dvc(tmp_path) -> None:
    """Three significant digits, and what DVC writes back (1e-05, no dot) loads as the same number."""
    from pipeline.config import load_params

    assert [proposed(x) for x in (1e-05, 3.3333e-05, 0.1, 1e-04, 0.123456)] == [1e-05, 3.33e-05, 0.1, 1e-04, 0.123]
    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  learning_rate: {proposed(1e-05)!r}\n")
    assert load_params(path).train.learning_rate == 1e-05


def test_yaml_scalars() -> None:
    assert [yaml_scalar(v) for v in (5e-05, 0.2, 2.0, 1e20, 7, True, None, ["adam", "gd"], "relu")] == [
        "5.0e-05", "0.2", "2.0", "1.0e+20", "7", "true", "null", "[adam,gd]", "relu",
    ]  # fmt: skip
    for v in (5e-05, 3.3e-4, 0.2, 2.0, 1e20, ["adam", "gd"], [64, 32], False):
        assert same(yaml.safe_load(yaml_scalar(v)), v), v  # PyYAML reads 5e-05 as text; 5.0e-05 as a float


def test_a_range_cut_short_by_its_edge_is_widened_first() -> None:
    diag, params, sizes = CASES["high bias"]
    assert remedies(diag, BEST, params, sizes)[0][0].set == {"tune.space.n_units.high": 256}
    deepest = {**BEST, "n_layers": 3}  # the best network has as many layers as the range allows
    assert remedies(diag, deepest, params, sizes)[0][0].set == {"tune.space.n_layers.high": 4}
