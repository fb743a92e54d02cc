"""Verdicts only on evidence: each gap's interval accounts for both rates; what the evidence cannot
settle is inconclusive, with the size that would settle it; the remedies follow."""

from __future__ import annotations

import pytest

from pipeline.config import Params, params_from_dict
from pipeline.report.diagnosis import VERDICTS, diagnose
from pipeline.report.remedies import remedies
from pipeline.report.remedies_data import MISMATCH_NOTES
from pipeline.report.stats import estimate, wilson_interval

HUMAN, TOL = 0.005, 0.02


def counts(**splits: tuple[int, int]):
    """Error estimates from (errors, n) per split."""
    return {k: estimate(k, e / n, n) for k, (e, n) in splits.items()}


def test_the_verdicts_are_the_documented_ones() -> None:
    assert set(VERDICTS) == {
        "high_bias", "high_variance", "high_bias_and_variance", "data_mismatch", "good_fit", "inconclusive",
        "vanishing_gradients", "exploding_gradients",
    }  # fmt: skip


def test_no_dev_error_in_five_is_inconclusive_not_a_good_fit() -> None:
    d = diagnose(counts(train=(3, 1761), dev=(0, 5)), HUMAN, TOL)
    v = d.gaps["variance"]
    assert d.verdict == "inconclusive" and v.status == "inconclusive" and not v.large
    assert v.method == "exact" and v.low < 0 < TOL < v.high  # up to +58 points: a large gap is not ruled out
    assert v.settle_split == "dev" and 150 < v.settle_n < 300
    assert f"about {v.settle_n} dev examples would settle it" in d.summary()


def test_one_error_in_five_against_a_tiny_train_error_is_inconclusive() -> None:
    e = counts(train=(4, 2000), dev=(1, 5))
    # the old rule (Wilson intervals that do not overlap) called this a significant 20-point gap
    assert wilson_interval(1, 5)[0] > wilson_interval(4, 2000)[1]
    d = diagnose(e, HUMAN, TOL)
    v = d.gaps["variance"]
    assert v.value == pytest.approx(0.198) and v.large and not v.significant and v.method == "exact"
    assert d.verdict == "inconclusive" and "High variance" not in d.summary()


def test_a_large_dev_set_shows_high_variance() -> None:
    d = diagnose(counts(train=(50, 5000), dev=(300, 3000)), HUMAN, TOL)
    v = d.gaps["variance"]
    assert d.verdict == "high_variance" and v.status == "problem" and v.method == "Newcombe"
    assert 0.07 < v.low < v.value < v.high < 0.11


@pytest.mark.parametrize(("dev_errors", "verdict"), [(6200, "high_variance"), (5800, "good_fit")])
def test_borderline_either_side_of_the_tolerance(dev_errors: int, verdict: str) -> None:
    # 200,000 examples each: +2.1 points is a problem, +1.9 points is within the tolerance
    d = diagnose(counts(train=(2000, 200_000), dev=(dev_errors, 200_000)), HUMAN, TOL)
    assert d.verdict == verdict
    assert d.gaps["variance"].status == ("problem" if verdict == "high_variance" else "fine")


def test_borderline_on_a_smaller_dev_set() -> None:
    # the same +2.1 and +1.9 points on 2,000 examples each
    above = diagnose(counts(train=(20, 2000), dev=(62, 2000)), HUMAN, TOL)
    assert above.verdict == "high_variance"  # [+1.3, +3.0]: above the tolerance and significant
    below = diagnose(counts(train=(20, 2000), dev=(58, 2000)), HUMAN, TOL)
    v = below.gaps["variance"]
    assert below.verdict == "inconclusive" and v.low > 0 and v.high > TOL  # real, but maybe above the tolerance
    # the train side's own uncertainty keeps the interval above the tolerance whatever the dev size
    assert v.settle_n is None and "the train side is too small" in below.summary()


def test_inconclusive_remedies_are_the_split_or_cv_the_data_supports() -> None:
    sizes = {"train": 1761, "dev": 18, "test": 18}
    d = diagnose(counts(train=(0, 1761), dev=(0, 18), test=(1, 18)), HUMAN, TOL)
    assert d.verdict == "inconclusive"
    fixes, _ = remedies(d, {}, Params(), sizes)
    first, second = fixes[0], fixes[1]
    n_needed = d.gaps["variance"].settle_n
    assert first.addresses == "dev_set" and first.set["split.dev"] * 1797 >= n_needed  # the data can give it
    assert "±" in first.why and "points" in first.why  # with the interval it will give
    assert second.set == {"tune.cv_folds": 5} and "1761 training examples" in second.why


# --- the target distribution (issue 11): data mismatch ---------------------------------------------

TARGET = {"source": "folder", "path": "data/raw/phone", "n_examples": 200, "target_train": 0.0, "in_train": 0}
SIZES = {"train": 1000, "train_dev": 100, "dev": 100, "test": 100}


def test_a_shifted_target_gives_a_significant_data_mismatch() -> None:
    d = diagnose(counts(train=(0, 1000), train_dev=(0, 100), dev=(31, 100)), HUMAN, TOL)
    m = d.gaps["data_mismatch"]
    assert d.verdict == "data_mismatch" and m.status == "problem" and m.formula == "dev - train-dev"
    assert m.method == "exact" and m.low > 0.1
    fixes, notes = remedies(d, {}, Params(), SIZES, target=TARGET)
    assert fixes[0].set == {"split.target_train": 0.2} and fixes[0].addresses == "data_mismatch"
    assert "about 40 of the 200 target examples" in fixes[0].why
    assert all(n in notes for n in MISMATCH_NOTES)  # collect or synthesize data; analyse the errors by hand
    moved = params_from_dict({"split": {"target_train": 0.2}})
    assert remedies(d, {}, moved, SIZES, target=TARGET)[0][0].set == {"split.target_train": 0.4}


def test_the_same_numbers_without_the_shift_give_no_data_mismatch() -> None:
    d = diagnose(counts(train=(0, 1000), train_dev=(0, 100), dev=(1, 100)), HUMAN, TOL)
    assert d.verdict != "data_mismatch" and not d.gaps["data_mismatch"].significant
    assert "data_mismatch" not in d.problems
