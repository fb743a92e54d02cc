"""Confidence intervals for error rates measured on small sets.

A 1% dev split of 1,797 digits holds 18 images: one mistake moves the error by 5.6 points. The
Wilson score interval stays inside [0, 1] and behaves at 0 and n errors, where the textbook
``p ± z·sqrt(p(1-p)/n)`` interval collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


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


def examples_needed(rate: float, half_width: float, confidence: float = 0.95) -> int:
    """About how many examples make the interval half as wide as ``half_width`` at this error rate."""
    p = min(max(rate, 0.01), 0.5)  # an observed 0% would claim a handful of examples suffice
    z = z_value(confidence)
    return math.ceil(z * z * p * (1 - p) / (half_width * half_width))


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
