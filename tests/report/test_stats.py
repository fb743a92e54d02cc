"""Wilson intervals against scipy's and against published values."""

import pytest
from scipy.stats import binomtest

from pipeline.report.stats import estimate, examples_needed, wilson_interval, z_value


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (1, 100), (10, 10), (3, 18), (17, 1761)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(k, n, confidence)
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_wilson_published_values() -> None:
    # Newcombe (1998), Table I, and the usual textbook values at 95%.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(1, 100) == pytest.approx((0.0018, 0.0545), abs=1e-4)
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_wilson_edges_and_bad_input() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError, match="errors <= n"):
        wilson_interval(4, 3)
    with pytest.raises(ValueError, match="dev error"):
        estimate("dev", 1.5, 10)


def test_estimate_counts_and_width() -> None:
    e = estimate("dev", 2 / 18, 18)
    assert e.errors == 2
    assert e.low < e.rate < e.high
    assert e.half_width > estimate("dev", 20 / 180, 180).half_width  # ten times the data, narrower interval


def test_examples_needed_grows_as_the_interval_shrinks() -> None:
    n = examples_needed(0.05, 0.02)
    assert examples_needed(0.05, 0.01) > n > examples_needed(0.05, 0.04)
    e = estimate("dev", 0.05, n)
    assert e.half_width == pytest.approx(0.02, rel=0.15)  # the normal approximation is close to Wilson here
