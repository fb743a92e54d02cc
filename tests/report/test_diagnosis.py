"""The diagnosis rule on constructed cases: each verdict, borderline overlaps, remedies, edges, regimes."""

from __future__ import annotations

import pytest

from pipeline.config import Params, params_from_dict
from pipeline.report.diagnosis import REGIMES, diagnose, regime
from pipeline.report.edges import edge_warnings
from pipeline.report.evidence import dev_set_limits
from pipeline.report.remedies import remedies
from pipeline.report.stats import estimate

HUMAN, TOL = 0.005, 0.02
SIZES = {"train": 6000, "dev": 2000, "test": 2000}  # the split the constructed errors below are measured on


def errs(train: float, dev: float | None = None, n: int = 2000, dev_n: int | None = None, **others: tuple[float, int]):
    out = {"train": estimate("train", train, n)}
    if dev is not None:
        out["dev"] = estimate("dev", dev, dev_n or n)
    for k, (rate, size) in others.items():
        out[k] = estimate(k, rate, size)
    return out


@pytest.mark.parametrize(
    ("errors", "verdict", "regime_label"),
    [
        (errs(0.15, 0.16), "high_bias", "underfit"),
        (errs(0.01, 0.10), "high_variance", "overfit"),
        (errs(0.10, 0.25), "high_bias_and_variance", "overfit"),
        (errs(0.01, 0.015), "good_fit", "good fit"),
    ],
)
def test_each_verdict_and_the_same_rule_per_trial(errors, verdict: str, regime_label: str) -> None:
    d = diagnose(errors, HUMAN, TOL)
    assert d.verdict == verdict
    assert regime(errors["train"].rate, errors["dev"].rate, HUMAN, TOL) == regime_label


def test_both_names_the_larger_gap() -> None:
    d = diagnose(errs(0.10, 0.25), HUMAN, TOL)
    assert set(d.problems) == {"avoidable_bias", "variance"}
    assert "larger is variance" in d.summary()
    assert regime(0.30, 0.35, HUMAN, TOL) == "underfit"  # both high, bias dominates


def test_data_mismatch_needs_train_dev() -> None:
    e = errs(0.01, 0.10, train_dev=(0.015, 2000))
    d = diagnose(e, HUMAN, TOL)
    assert d.verdict == "data_mismatch"
    assert d.gaps["variance"].formula == "train-dev - train"
    assert d.gaps["data_mismatch"].status == "problem"
    assert "data_mismatch" not in diagnose(errs(0.01, 0.10), HUMAN, TOL).gaps


def test_variance_with_train_dev_is_measured_on_train_dev() -> None:
    d = diagnose(errs(0.01, 0.10, train_dev=(0.10, 2000)), HUMAN, TOL)
    assert d.verdict == "high_variance"
    assert d.gaps["data_mismatch"].status == "fine"


def test_overlapping_dev_interval_is_inconclusive_not_a_problem() -> None:
    # 1 error in an 18-image dev set: 5.6% vs 1% train is above the tolerance, but the interval
    # spans ~1%-26% and overlaps the train interval.
    e = errs(0.01, 1 / 18, dev_n=18)
    d = diagnose(e, HUMAN, TOL)
    assert d.gaps["variance"].large and not d.gaps["variance"].significant
    assert d.verdict == "inconclusive"
    text = d.summary().lower()
    assert "cannot tell a good fit from a gap above the tolerance" in text and "dev examples would settle it" in text
    assert "high variance" not in text
    assert any("inconclusive" in line for line in d.explain())
    # ...while the same gap on a large dev set is a real problem
    assert diagnose(errs(0.01, 1 / 18, dev_n=1800), HUMAN, TOL).verdict == "high_variance"


def test_overlapping_bias_is_inconclusive() -> None:
    # 1 error in 20 train examples vs a 2% human level: 3 points above, but the interval reaches 0.9%.
    d = diagnose({"train": estimate("train", 0.05, 20)}, 0.02, TOL)
    assert d.gaps["avoidable_bias"].status == "inconclusive"
    assert d.verdict == "inconclusive"


def test_significant_but_small_gap_is_fine() -> None:
    d = diagnose(errs(0.010, 0.025, n=200_000), HUMAN, TOL)
    g = d.gaps["variance"]
    assert g.significant and not g.large and g.status == "fine"
    assert d.verdict == "good_fit"


def test_dev_overfit_is_reported_beside_the_verdict() -> None:
    d = diagnose(errs(0.01, 0.015, test=(0.10, 2000)), HUMAN, TOL)
    assert d.verdict == "good_fit"
    assert d.gaps["dev_overfit"].status == "problem"
    assert "Also significant: overfitting to dev (+8.50 points)" in d.summary()
    fixes, _ = remedies(d, {}, Params(), SIZES)
    split = next(r for r in fixes if r.addresses == "dev_overfit")
    assert split.set == {"split.dev": 0.02, "split.test": 0.02, "split.train": 0.96}  # twice the examples to pick on


def test_dev_set_limits() -> None:
    small = dev_set_limits(errs(0.01, 2 / 18, dev_n=18), TOL, 0.95)
    assert small["too_small"] and small["unsupported"] and small["needed_n"] > 18
    big = dev_set_limits(errs(0.01, 0.05, dev_n=5000), TOL, 0.95)
    assert not big["too_small"] and big["unsupported"] == []


def changes(d, best: dict, p: Params) -> dict:
    """Every key the remedies set (the first remedy's value where two set the same key)."""
    out: dict = {}
    for r in remedies(d, best, p, SIZES)[0]:
        out = {**r.set, **out}
    return out


def test_remedies_map_onto_knobs_and_ranges() -> None:
    p = Params()
    best = {"learning_rate": 1e-3, "n_layers": 2, "n_units": 64, "l2_lambda": 1e-2, "keep_prob": 0.8}
    bias = changes(diagnose(errs(0.15, 0.16), HUMAN, TOL), best, p)
    assert bias["tune.space.n_units.high"] == 256
    assert bias["tune.space.n_layers.high"] == 4
    assert bias["train.epochs"] == 120  # not searched: its own key
    assert bias["tune.space.l2_lambda.high"] == 0.01  # less L2: cap at the best lambda
    assert bias["tune.space.keep_prob.low"] == 0.8  # less dropout
    var = changes(diagnose(errs(0.01, 0.10), HUMAN, TOL), best, p)
    assert var["tune.space.l2_lambda.low"] == 0.01  # more L2
    assert var["tune.space.keep_prob.low"] == 0.4  # more dropout
    assert var["tune.space.l2_lambda.allow_off"] is False
    assert var["train.patience"] == 10
    assert "tune.space.n_units.high" not in changes(diagnose(errs(0.01, 0.015), HUMAN, TOL), best, p)
    searched = params_from_dict({"tune": {"space": {"epochs": {"low": 5, "high": 30}}}})
    assert changes(diagnose(errs(0.15, 0.16), HUMAN, TOL), best, searched)["tune.space.epochs.high"] == 60


def test_edge_warnings() -> None:
    space = Params().tune.space
    best = {"learning_rate": 0.029, "n_layers": 1, "n_units": 60, "l2_lambda": 0.0, "keep_prob": 1.0}
    warnings = {w.name: w for w in edge_warnings(best, space)}
    assert set(warnings) == {"learning_rate", "n_layers", "keep_prob"}  # l2 'off' is a choice, not an edge
    assert warnings["learning_rate"].side == "high"
    assert "tune.space.learning_rate.high: 0.03 -> 0.09" in warnings["learning_rate"].message
    assert "cannot go further" in warnings["n_layers"].message  # 1 layer is the least
    assert "cannot go further" in warnings["keep_prob"].message  # keep_prob cannot exceed 1
    assert edge_warnings({"learning_rate": 2e-3, "n_units": 40, "keep_prob": 0.8}, space) == []


def test_edge_warning_on_log_scale() -> None:
    space = params_from_dict({"tune": {"space": {"l2_lambda": {"low": 1.0e-4, "high": 1.0}}}}).tune.space
    # 1.4e-4 is 0.4% of the way along a log range, though 1.4e-4 is tiny on a linear one too; 0.5 is at 92%
    assert [w.side for w in edge_warnings({"l2_lambda": 1.4e-4}, space)] == ["low"]
    assert edge_warnings({"l2_lambda": 0.3}, space) == []


def test_regime_values() -> None:
    assert {regime(t, d, HUMAN, TOL) for t, d in [(0.2, 0.21), (0.01, 0.2), (0.01, 0.01)]} == set(REGIMES)


def test_dev_overfit_alone_does_not_make_the_verdict() -> None:
    # test 2/30 vs dev 1.2% of 20000: 5.5 points apart, but 2 of 30 cannot show it; bias and variance are fine
    d = diagnose(errs(0.01, 0.012, n=20_000, test=(2 / 30, 30)), 0.0, TOL)
    assert d.gaps["dev_overfit"].status == "inconclusive"
    assert d.verdict == "good_fit"
    assert "Not settled by the evidence: overfitting to dev (test - dev) +5.47 points" in d.summary()
