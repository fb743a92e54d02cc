"""What the evidence can settle: a gap's interval, the size of evaluation set that would settle an
inconclusive gap, and which comparisons the dev set is too small to support.

A gap ``a - b`` of two error rates gets ``stats.difference_interval`` (Newcombe's, or exact for
small counts); one against the fixed human level gets the rate's own interval, shifted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipeline.report.stats import ErrorEstimate, difference_interval, examples_needed, rate_interval

MAX_SETTLE_N = 10_000_000  # beyond this, "no evaluation set of any size settles it at these rates"


def gap_interval(a: ErrorEstimate, b: ErrorEstimate | float, confidence: float) -> tuple[float, float, str]:
    """The interval of ``a - b``; ``b`` a number is the fixed human level."""
    if isinstance(b, ErrorEstimate):
        return difference_interval(a.errors, a.n, b.errors, b.n, confidence)
    low, high, method = rate_interval(a.errors, a.n, confidence)
    return low - b, high - b, method


def _settles(a: ErrorEstimate, n: int, b: ErrorEstimate | float, tolerance: float, confidence: float) -> bool:
    resized = replace(a, n=n)  # the same rate on n examples (the count is rounded)
    low, high, _ = gap_interval(resized, b, confidence)
    value = a.rate - (b.rate if isinstance(b, ErrorEstimate) else b)
    return low > 0 if value > tolerance else high <= tolerance  # the rule of diagnosis.Gap.status


def settle_size(a: ErrorEstimate, b: ErrorEstimate | float, tolerance: float, confidence: float) -> int | None:
    """About how many examples on side ``a`` (at its observed rate) would settle the gap ``a - b``:
    make it significant when it is above the tolerance, or put its interval within the tolerance.
    None when no size up to MAX_SETTLE_N does (the other side's uncertainty alone is too wide)."""
    if _settles(a, a.n, b, tolerance, confidence):
        return a.n
    low, high = a.n, max(2 * a.n, 2)
    while not _settles(a, high, b, tolerance, confidence):
        if high >= MAX_SETTLE_N:
            return None
        low, high = high, min(2 * high, MAX_SETTLE_N)
    while high - low > max(1, low // 100):  # to about 1%: it is a planning number
        mid = (low + high) // 2
        low, high = (low, mid) if _settles(a, mid, b, tolerance, confidence) else (mid, high)
    return high


def dev_set_limits(errors: Mapping[str, ErrorEstimate], tolerance: float, confidence: float) -> dict[str, Any]:
    """How wide the dev interval is and which comparisons it is too small to support."""
    dev = errors.get("dev")
    if dev is None:
        return {"too_small": False, "unsupported": [], "reason": "no dev error available"}
    too_small = dev.half_width > tolerance
    unsupported = []
    if too_small:
        unsupported = [
            "variance (dev - train): a gap below the dev interval's half-width is noise",
            "overfitting to dev (test - dev): both sides are small sets",
            "ranking trials whose dev errors differ by less than the interval: the best one may have won by luck",
        ]
        if "train_dev" in errors:
            unsupported[0] = "data mismatch (dev - train-dev)"
    return {
        "n": dev.n,
        "half_width": dev.half_width,
        "too_small": too_small,
        "unsupported": unsupported,
        "needed_n": examples_needed(dev.rate, tolerance, confidence),
    }
