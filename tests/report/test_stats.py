"""Wilson intervals against scipy's and against published values."""

import pytest

from pipeline.report.stats import (
    clopper_pearson,
    difference_interval,
    difference_of_differences,
    estimate,
    examples_needed,
    expected_half_width,
    mcnemar_p,
    newcombe_interval,
    rate_interval,
    wilson_interval,
    z_value,
)


def binomtest(*args, **kwargs):
    """scipy's, imported on first use: scipy.stats takes about a second, paid only where these tests run."""
    from scipy.stats import binomtest as scipy_binomtest

    return scipy_binomtest(*args, **kwargs)


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


# Newcombe (1998), "Interval estimation for the difference between independent proportions",
# Statistics in Medicine 17:873-890, Table II, method 10 (score interval, no continuity correction).
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_newcombe_matches_the_published_table(counts: tuple[int, int, int, int], published: tuple) -> None:
    assert newcombe_interval(*counts, confidence=0.95) == pytest.approx(published, abs=1e-4)


def test_newcombe_is_antisymmetric_and_narrows_with_n() -> None:
    low, high = newcombe_interval(3, 18, 1, 18)
    assert newcombe_interval(1, 18, 3, 18) == pytest.approx((-high, -low))
    wide, narrow = newcombe_interval(3, 30, 1, 30), newcombe_interval(300, 3000, 100, 3000)
    assert narrow[0] > 0 > wide[0]  # the same rates: significant only on the larger sets


def test_difference_of_differences_adds_the_two_uncertainties() -> None:
    # two independent moves of +5 and +1 points, each +-2: the difference of +4 is known to +-2.83
    low, high = difference_of_differences(0.05, (0.03, 0.07), 0.01, (-0.01, 0.03))
    assert (low, high) == pytest.approx((0.04 - 0.02 * 2**0.5, 0.04 + 0.02 * 2**0.5))


def test_expected_half_width_plans_a_split() -> None:
    assert expected_half_width(0.2, 91) == pytest.approx(0.0811, abs=1e-4)  # 18 errors in 91 (scipy's Wilson)
    assert expected_half_width(0.0, 100) == expected_half_width(0.01, 100)  # 0% is planned as 1%
    n = examples_needed(0.2, 0.02)
    assert expected_half_width(0.2, n) <= 0.02 < expected_half_width(0.2, n - 1)


@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 5), (4, 2000), (0, 100), (31, 100), (5, 5), (17, 1761), (99, 100)])
@pytest.mark.parametrize("confidence", [0.95, 0.975])
def test_clopper_pearson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert clopper_pearson(k, n, confidence) == pytest.approx((ref.low, ref.high), abs=1e-10)


# (only A wrong, only B wrong): the discordant pairs of two classifiers on the same examples
@pytest.mark.parametrize("table", [(3, 7), (0, 7), (10, 10), (40, 60), (1, 0), (0, 0), (600, 700), (2, 15)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs(table: tuple[int, int]) -> None:
    b, c = table
    expected = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert mcnemar_p(c, b) == mcnemar_p(b, c)


def test_mcnemar_known_values() -> None:
    assert mcnemar_p(0, 7) == pytest.approx(2 / 2**7)  # all 7 disagreements one way: 2 * 0.5**7
    assert mcnemar_p(3, 7) == pytest.approx(0.34375)  # 2 * P(X <= 3), X ~ Binomial(10, 0.5) = 2 * 176/1024


def test_difference_interval_is_exact_for_small_counts() -> None:
    # both sides with at least 5 errors and 5 correct: Newcombe's interval itself
    assert difference_interval(300, 3000, 50, 5000) == (*newcombe_interval(300, 3000, 50, 5000), "Newcombe")
    # one error in five: each side's Clopper-Pearson interval at 97.5%, combined by Bonferroni
    low, high, method = difference_interval(1, 5, 4, 2000)
    a = binomtest(1, 5).proportion_ci(0.975, method="exact")
    b = binomtest(4, 2000).proportion_ci(0.975, method="exact")
    assert method == "exact" and (low, high) == pytest.approx((a.low - b.high, a.high - b.low))
    assert low < 0  # not significant, where Newcombe's approximation would call it so
    assert newcombe_interval(1, 5, 4, 2000)[0] > 0
    assert rate_interval(0, 1761)[2] == "exact" and rate_interval(17, 1761)[2] == "Wilson"
