"""Bias/variance diagnosis: gaps between error rates, a verdict, and each trial's regime (the one rule).

The framework (Ng, *Machine Learning Yearning*; course 2, week 1): with human-level error as a
proxy for Bayes error,

    avoidable bias = train - human        variance      = dev - train (train-dev - train)
    data mismatch  = dev - train-dev      dev overfit   = test - dev

A gap is *large* when it exceeds ``report.tolerance`` and *significant* when the Wilson intervals
of the two error rates do not overlap (human error is a fixed number). Overlap is a conservative
test: a large gap that is not significant is reported as inconclusive, never as a problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.report.stats import ErrorEstimate, examples_needed

REGIME_TAG = "regime"  # MLflow tag set on every trial run
REGIMES = ("underfit", "overfit", "good fit")

TITLES = {
    "high_bias": "High bias (underfitting)",
    "high_variance": "High variance (overfitting)",
    "both": "High bias and high variance",
    "data_mismatch": "Data mismatch",
    "inconclusive": "Inconclusive",
    "good_fit": "Good fit",
}
GAP_NAMES = {
    "avoidable_bias": "avoidable bias",
    "variance": "variance",
    "data_mismatch": "data mismatch",
    "dev_overfit": "overfitting to dev",
}
# Gaps that make the verdict; overfitting to dev is reported beside it.
VERDICT_GAPS = ("avoidable_bias", "variance", "data_mismatch")


def pct(x: float) -> str:
    """An error rate as a percentage, e.g. 0.0556 -> '5.56%'."""
    return f"{100 * x:.2f}%"


def _large(gap: float, tolerance: float) -> bool:
    return gap > tolerance


def regime(train_error: float, dev_error: float, human_error: float, tolerance: float) -> str:
    """Label a trial 'underfit', 'overfit' or 'good fit' by the verdict's rule on point estimates.

    When both gaps are large the larger one names the regime (Ng's rule: fix the dominant one).
    """
    bias, variance = train_error - human_error, dev_error - train_error
    high_bias, high_variance = _large(bias, tolerance), _large(variance, tolerance)
    if high_bias and high_variance:
        return "underfit" if bias >= variance else "overfit"
    if high_bias:
        return "underfit"
    return "overfit" if high_variance else "good fit"


@dataclass(frozen=True)
class Gap:
    key: str  # avoidable_bias | variance | data_mismatch | dev_overfit
    formula: str  # e.g. "dev - train"
    value: float
    large: bool  # above the tolerance: big enough to act on
    significant: bool  # the intervals do not overlap

    @property
    def status(self) -> str:
        """'problem' (large and significant), 'inconclusive' (large, not significant) or 'fine'."""
        if not self.large:
            return "fine"
        return "problem" if self.significant else "inconclusive"


def _above(a: ErrorEstimate, b: ErrorEstimate) -> bool:
    return a.low > b.high


def gaps(errors: Mapping[str, ErrorEstimate], human_error: float, tolerance: float) -> dict[str, Gap]:
    """Compute the gaps that the available splits allow (``train`` is required)."""
    train, dev, train_dev, test = (errors.get(k) for k in ("train", "dev", "train_dev", "test"))
    if train is None:
        raise ValueError("the diagnosis needs the train error")
    out = {
        "avoidable_bias": Gap(
            "avoidable_bias", "train - human", train.rate - human_error, False, train.low > human_error
        )
    }
    if train_dev is not None:
        out["variance"] = Gap(
            "variance", "train-dev - train", train_dev.rate - train.rate, False, _above(train_dev, train)
        )
        if dev is not None:
            out["data_mismatch"] = Gap(
                "data_mismatch", "dev - train-dev", dev.rate - train_dev.rate, False, _above(dev, train_dev)
            )
    elif dev is not None:
        out["variance"] = Gap("variance", "dev - train", dev.rate - train.rate, False, _above(dev, train))
    if dev is not None and test is not None:
        out["dev_overfit"] = Gap("dev_overfit", "test - dev", test.rate - dev.rate, False, _above(test, dev))
    return {k: Gap(g.key, g.formula, g.value, _large(g.value, tolerance), g.significant) for k, g in out.items()}


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # a key of TITLES
    gaps: dict[str, Gap]
    errors: dict[str, ErrorEstimate]
    human_error: float
    tolerance: float

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(k for k, g in self.gaps.items() if g.status == "problem")

    @property
    def inconclusive(self) -> tuple[str, ...]:
        return tuple(k for k, g in self.gaps.items() if g.status == "inconclusive")

    def explain(self) -> list[str]:
        """One sentence per gap: its value, the numbers behind it and what the rule made of it."""
        lines = []
        for g in self.gaps.values():
            a, b = g.formula.split(" - ")
            lines.append(
                f"{GAP_NAMES[g.key]} = {a} {self._value(a)} - {b} {self._value(b)} = {100 * g.value:+.2f} points: "
                + _status_phrase(g, self.tolerance)
            )
        return lines

    def summary(self) -> str:
        """The verdict in one to three sentences."""
        title = TITLES[self.verdict]
        points = {k: f"{100 * g.value:+.2f} points" for k, g in self.gaps.items()}
        if self.verdict == "good_fit":
            text = f"{title}: bias and variance are within the tolerance of {100 * self.tolerance:.1f} points."
        elif self.verdict == "inconclusive":
            names = ", ".join(f"{GAP_NAMES[k]} ({points[k]})" for k in self.inconclusive)
            text = (
                f"{title}: {names} exceeds the tolerance but is not significant at this confidence: the intervals "
                "overlap, so no problem is claimed; a larger evaluation set is needed to tell."
            )
        else:
            names = " and ".join(f"{GAP_NAMES[k]} of {points[k]}" for k in self.problems if k in VERDICT_GAPS)
            text = f"{title}: {names}, above the tolerance and significant (the intervals do not overlap)."
            if self.verdict == "both":
                bias, var = self.gaps["avoidable_bias"].value, self.gaps["variance"].value
                text += f" The larger is {'avoidable bias' if bias >= var else 'variance'}: address it first."
        if self.inconclusive and self.verdict != "inconclusive":
            text += (
                " Above the tolerance but not significant: " + ", ".join(GAP_NAMES[k] for k in self.inconclusive) + "."
            )
        if "dev_overfit" in self.problems:
            text += f" Also significant: overfitting to dev ({points['dev_overfit']}): the dev score is optimistic."
        return text

    def _value(self, name: str) -> str:
        if name == "human":
            return pct(self.human_error)
        e = self.errors[name.replace("-", "_")]
        return f"{pct(e.rate)} [{pct(e.low)}, {pct(e.high)}]"


def _status_phrase(g: Gap, tolerance: float) -> str:
    tol = f"{100 * tolerance:.1f} points"
    if g.status == "problem":
        return f"above the tolerance of {tol} and significant (the intervals do not overlap)."
    if g.status == "inconclusive":
        return (
            f"above the tolerance of {tol} but not significant: the intervals overlap, so the evidence is inconclusive."
        )
    if g.significant:
        return f"significant but within the tolerance of {tol}: not worth acting on."
    return f"within the tolerance of {tol}."


def diagnose(errors: Mapping[str, ErrorEstimate], human_error: float, tolerance: float) -> Diagnosis:
    """Name the verdict from the significant, large gaps; large but overlapping gaps make it inconclusive."""
    found = gaps(errors, human_error, tolerance)
    problems = {k for k, g in found.items() if g.status == "problem" and k in VERDICT_GAPS}
    if {"avoidable_bias", "variance"} <= problems:
        verdict = "both"
    elif "avoidable_bias" in problems:
        verdict = "high_bias"
    elif "variance" in problems:
        verdict = "high_variance"
    elif "data_mismatch" in problems:
        verdict = "data_mismatch"
    elif any(found[k].status == "inconclusive" for k in VERDICT_GAPS if k in found):
        verdict = "inconclusive"
    else:
        verdict = "good_fit"
    return Diagnosis(verdict, found, dict(errors), human_error, tolerance)


# --- what the dev set can and cannot support ----------------------------------------------------


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
