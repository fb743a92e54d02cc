"""Confidence intervals for error rates measured on small sets, and for their differences.

A 1% dev split of 1,797 images holds 18: one mistake moves the error by 5.6 points. The Wilson
score interval stays inside [0, 1] and behaves at 0 and n errors, where the textbook
``p ± z·sqrt(p(1-p)/n)`` interval collapses to a point. Newcombe's interval for a difference of
two rates combines their Wilson intervals; ``examples_needed`` and ``expected_half_width`` plan a
split by the same interval. Where a count is small, the exact (Clopper-Pearson) interval replaces
them, and McNemar's exact test compares two classifiers on the same examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from scipy.special import betainc, betaincinv  # scipy comes with scikit-learn


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile, e.g. 1.96 for 0.95."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``errors / n``; ``(0, 1)`` when ``n == 0``."""
    if n < 0 or not 0 <= errors <= max(n, 0):
        raise ValueError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if n == 0:
        return 0.0, 1.0  # no examples: nothing is known
    z = z_value(confidence)
    p = errors / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Exact bounds at the ends; floating point would give 1e-17 instead of 0.
    low = 0.0 if errors == 0 else max(0.0, center - half)
    high = 1.0 if errors == n else min(1.0, center + half)
    return low, high


def _planning_rate(rate: float) -> float:
    # An observed 0% would claim a handful of examples suffice; above 50% the interval only narrows.
    return min(max(rate, 0.01), 0.5)


def expected_half_width(rate: float, n: int, confidence: float = 0.95) -> float:
    """The Wilson half-width an error rate near ``rate`` will have on ``n`` examples (planning a split)."""
    if n < 1:
        return 0.5
    p = _planning_rate(rate)
    low, high = wilson_interval(round(p * n), n, confidence)
    return (high - low) / 2


def examples_needed(rate: float, half_width: float, confidence: float = 0.95) -> int:
    """About how many examples give an error rate near ``rate`` a Wilson half-width of ``half_width``.

    The smallest n (by bisection: the half-width shrinks with n) with ``expected_half_width <= half_width``.
    """
    if half_width <= 0:
        raise ValueError(f"half_width must be > 0, got {half_width}")
    low, high = 1, 2
    while expected_half_width(rate, high, confidence) > half_width:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if expected_half_width(rate, mid, confidence) > half_width else (low, mid)
    return high


def newcombe_interval(
    errors_a: int, n_a: int, errors_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for the difference ``errors_a / n_a - errors_b / n_b``.

    Method 10 of Newcombe (1998), "Interval estimation for the difference between independent
    proportions": each rate's Wilson interval, combined by squaring and adding the distances to
    the estimates. It stays inside [-1, 1] and behaves at 0 and n errors. For two measurements on
    the *same* examples (a re-scored dev set) it is conservative: paired data vary less.
    """
    pa, pb = errors_a / n_a if n_a else 0.0, errors_b / n_b if n_b else 0.0
    la, ua = wilson_interval(errors_a, n_a, confidence)
    lb, ub = wilson_interval(errors_b, n_b, confidence)
    d = pa - pb
    return max(-1.0, d - math.hypot(pa - la, ub - pb)), min(1.0, d + math.hypot(ua - pa, pb - lb))


def difference_of_differences(
    d1: float, ci1: tuple[float, float], d2: float, ci2: tuple[float, float]
) -> tuple[float, float]:
    """An interval for ``d1 - d2`` from independent intervals of each (the same square-and-add rule).

    Used for how a gap such as ``dev - train`` moved between two runs: the dev move minus the train move.
    """
    d = d1 - d2
    return d - math.hypot(d1 - ci1[0], ci2[1] - d2), d + math.hypot(ci1[1] - d1, d2 - ci2[0])


@dataclass(frozen=True)
class ErrorEstimate:
    """An error rate measured on ``n`` examples, with its Wilson interval."""

    split: str
    rate: float
    n: int
    low: float
    high: float

    @property
    def errors(self) -> int:
        return round(self.rate * self.n)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def estimate(split: str, rate: float, n: int, confidence: float = 0.95) -> ErrorEstimate:
    """Wrap an error rate on ``n`` examples with its interval (the count is ``round(rate * n)``)."""
    if not 0.0 <= rate <= 1.0 or not math.isfinite(rate):
        raise ValueError(f"{split} error must lie in [0, 1], got {rate}")
    errors = round(rate * n)
    low, high = wilson_interval(errors, n, confidence)
    return ErrorEstimate(split, rate, n, low, high)


# --- tests for gaps: two rates, or one rate against a fixed number -------------------------------

SMALL_COUNT = 5  # below this many errors (or correct answers) on a side, normal approximations mislead


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): the regularized incomplete beta ``I_{1-p}(n - k, k + 1)``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(betainc(n - k, k + 1, 1.0 - p))


def clopper_pearson(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for ``errors / n``: it never covers less than ``confidence``.

    Its bounds are beta quantiles: they solve P(X >= errors; low) = P(X <= errors; high) = (1 - c) / 2.
    """
    if n < 0 or not 0 <= errors <= max(n, 0):
        raise ValueError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if errors == 0 else float(betaincinv(errors, n - errors + 1, alpha / 2))
    high = 1.0 if errors == n else float(betaincinv(errors + 1, n - errors, 1 - alpha / 2))
    return low, high


def is_small(errors: int, n: int) -> bool:
    """Too few errors or too few correct answers for a score interval's approximation."""
    return min(errors, n - errors) < SMALL_COUNT


def rate_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float, str]:
    """An error rate's interval and its method: Wilson, or exact (Clopper-Pearson) for a small count."""
    if is_small(errors, n):
        return (*clopper_pearson(errors, n, confidence), "exact")
    return (*wilson_interval(errors, n, confidence), "Wilson")


def difference_interval(
    errors_a: int, n_a: int, errors_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float, str]:
    """An interval for ``errors_a / n_a - errors_b / n_b`` and the method used.

    Newcombe's hybrid score interval (method 10 of Newcombe 1998) when both sides have at least
    SMALL_COUNT errors and correct answers. Otherwise "exact": each rate's Clopper-Pearson interval
    at ``1 - (1 - confidence) / 2``, combined as ``[low_a - high_b, high_a - low_b]``; by Bonferroni
    the difference lies outside only if a rate lies outside its interval, so the coverage is at
    least ``confidence`` (conservative: it claims a gap less often than the level says).
    """
    if not (is_small(errors_a, n_a) or is_small(errors_b, n_b)):
        return (*newcombe_interval(errors_a, n_a, errors_b, n_b, confidence), "Newcombe")
    each = 1.0 - (1.0 - confidence) / 2
    la, ua = clopper_pearson(errors_a, n_a, each)
    lb, ub = clopper_pearson(errors_b, n_b, each)
    return max(-1.0, la - ub), min(1.0, ua - lb), "exact"


def mcnemar_p(only_a_wrong: int, only_b_wrong: int) -> float:
    """McNemar's exact test of two classifiers on the same examples: the two-sided binomial test of the
    discordant pairs (``only_a_wrong`` examples that A gets wrong and B right, and the reverse) against
    an even split. 1.0 when they never disagree."""
    n = only_a_wrong + only_b_wrong
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(only_a_wrong, only_b_wrong), n, 0.5))
