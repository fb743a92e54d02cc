"""Bias/variance diagnosis: gaps between error rates, a verdict, and each trial's regime (the one rule).

The framework (Ng, *Machine Learning Yearning*; course 2, week 1): with human-level error as a
proxy for Bayes error,

    avoidable bias = train - human        variance      = dev - train (train-dev - train)
    data mismatch  = dev - train-dev      dev overfit   = test - dev

Each gap carries an interval at ``report.confidence`` that accounts for the uncertainty of both
rates (``stats.difference_interval``: Newcombe's, or exact for small counts; human error is a fixed
number, so avoidable bias has the train rate's interval). A gap is

- a *problem* when it exceeds ``report.tolerance`` and is significant (its interval excludes 0);
- *fine* when its whole interval lies at or below the tolerance: the evidence shows it is small;
- *inconclusive* otherwise: the evidence cannot tell a good fit from a gap above the tolerance.
  The gap says how many examples on its measured side (dev, train-dev, test, or train for
  avoidable bias) would settle it at the rates observed.

A gradient-health flag (``health``) takes precedence over high bias: a network whose first layers
do not learn underfits for that reason, and a bigger network would only make it worse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from pipeline.report.evidence import gap_interval, settle_size
from pipeline.report.health import HealthFlag
from pipeline.report.stats import ErrorEstimate

REGIME_TAG = "regime"  # MLflow tag set on every trial run
REGIMES = ("underfit", "overfit", "good fit")

TITLES = {
    "high_bias": "High bias (underfitting)",
    "high_variance": "High variance (overfitting)",
    "high_bias_and_variance": "High bias and high variance",
    "data_mismatch": "Data mismatch",
    "inconclusive": "Inconclusive",
    "good_fit": "Good fit",
    "vanishing_gradients": "Vanishing gradients",
    "exploding_gradients": "Exploding gradients",
}
VERDICTS = tuple(TITLES)
GRADIENT_VERDICTS = ("vanishing_gradients", "exploding_gradients")
LEGACY_VERDICTS = {"both": "high_bias_and_variance"}  # names of diagnosis.json files written before
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


def points(x: float) -> str:
    return f"{100 * x:+.2f}"


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
    low: float  # the interval of the gap at report.confidence
    high: float
    method: str  # "Newcombe", "Wilson" (one rate against human level) or "exact"
    tolerance: float
    settle_split: str = ""  # the split whose size would settle an inconclusive gap
    settle_n: int | None = None  # about how many examples there would settle it (None: no size does)

    @property
    def large(self) -> bool:
        """Above the tolerance: big enough to act on."""
        return _large(self.value, self.tolerance)

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0

    @property
    def status(self) -> str:
        """'problem' (large and significant), 'fine' (the interval at or below the tolerance) or 'inconclusive'."""
        if self.large and self.significant:
            return "problem"
        return "fine" if self.high <= self.tolerance else "inconclusive"


def _sides(formula: str) -> tuple[str, str]:
    a, b = formula.split(" - ")
    return a.replace("-", "_"), b.replace("-", "_")


def gaps(
    errors: Mapping[str, ErrorEstimate], human_error: float, tolerance: float, confidence: float = 0.95
) -> dict[str, Gap]:
    """Compute the gaps that the available splits allow (``train`` is required)."""
    train, dev, train_dev, test = (errors.get(k) for k in ("train", "dev", "train_dev", "test"))
    if train is None:
        raise ValueError("the diagnosis needs the train error")
    wanted = {"avoidable_bias": "train - human"}
    if train_dev is not None:
        wanted["variance"] = "train-dev - train"
        if dev is not None:
            wanted["data_mismatch"] = "dev - train-dev"
    elif dev is not None:
        wanted["variance"] = "dev - train"
    if dev is not None and test is not None:
        wanted["dev_overfit"] = "test - dev"
    out = {}
    for key, formula in wanted.items():
        a_name, b_name = _sides(formula)
        a, b = errors[a_name], (human_error if b_name == "human" else errors[b_name])
        value = a.rate - (b.rate if isinstance(b, ErrorEstimate) else b)
        low, high, method = gap_interval(a, b, confidence)
        gap = Gap(key, formula, value, low, high, method, tolerance, a_name)
        if gap.status == "inconclusive":
            gap = replace(gap, settle_n=settle_size(a, b, tolerance, confidence))
        out[key] = gap
    return out


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # a key of TITLES
    gaps: dict[str, Gap]
    errors: dict[str, ErrorEstimate]
    human_error: float
    tolerance: float
    confidence: float = 0.95
    gradient: HealthFlag | None = None  # the final model's gradient-health flag, if any
    bias_verdict: str = ""  # the verdict from the gaps alone (differs when a gradient flag took precedence)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(k for k, g in self.gaps.items() if g.status == "problem")

    @property
    def inconclusive(self) -> tuple[str, ...]:
        return tuple(k for k, g in self.gaps.items() if g.status == "inconclusive")

    def explain(self) -> list[str]:
        """One sentence per gap: its value, the numbers behind it, its interval and what the rule made of it."""
        lines = []
        for g in self.gaps.values():
            a, b = g.formula.split(" - ")
            lines.append(
                f"{GAP_NAMES[g.key]} = {a} {self._value(a)} - {b} {self._value(b)} = {100 * g.value:+.2f} points, "
                f"{self._conf} interval {_interval_text(g)}: " + self._status_phrase(g)
            )
        return lines

    @property
    def _conf(self) -> str:
        return f"{100 * self.confidence:.0f}%"

    def summary(self) -> str:
        """The verdict in one to three sentences."""
        title = TITLES[self.verdict]
        pts = {k: f"{100 * g.value:+.2f} points" for k, g in self.gaps.items()}
        tol = f"{100 * self.tolerance:.1f} points"
        if self.gradient is not None and self.verdict == self.gradient.verdict:
            text = f"{title}: {self.gradient.reason}."
            if self.bias_verdict != self.verdict:
                text += f" This takes precedence over the gaps' verdict ({TITLES[self.bias_verdict].lower()})."
        elif self.verdict == "good_fit":
            text = f"{title}: every gap's {self._conf} interval lies within the tolerance of {tol}."
        elif self.verdict == "inconclusive":
            names = "; ".join(self._inconclusive_phrase(k) for k in self.inconclusive if k in VERDICT_GAPS)
            text = f"{title}: the evidence cannot tell a good fit from a gap above the tolerance of {tol}: {names}."
        else:
            names = " and ".join(f"{GAP_NAMES[k]} of {pts[k]}" for k in self.problems if k in VERDICT_GAPS)
            text = f"{title}: {names}, above the tolerance and significant (the {self._conf} interval excludes 0)."
            if self.verdict == "high_bias_and_variance":
                bias, var = self.gaps["avoidable_bias"].value, self.gaps["variance"].value
                text += f" The larger is {'avoidable bias' if bias >= var else 'variance'}: address it first."
        if self.gradient is not None and self.verdict != self.gradient.verdict:
            text += f" Gradient health: {self.gradient.kind} gradients ({self.gradient.reason})."
        others = [k for k in self.inconclusive if self.verdict != "inconclusive" or k not in VERDICT_GAPS]
        if others:
            text += " Not settled by the evidence: " + "; ".join(self._inconclusive_phrase(k) for k in others) + "."
        if "dev_overfit" in self.problems:
            text += f" Also significant: overfitting to dev ({pts['dev_overfit']}): the dev score is optimistic."
        return text

    def _inconclusive_phrase(self, key: str) -> str:
        g = self.gaps[key]
        text = f"{GAP_NAMES[key]} ({g.formula}) {100 * g.value:+.2f} points, interval {_interval_text(g)}"
        if g.settle_n is None:
            other = _sides(g.formula)[1].replace("_", "-")
            return text + f" (the {other} side is too small for a {g.settle_split} set of any size to settle it)"
        return text + f" (about {g.settle_n} {g.settle_split} examples would settle it)"

    def _status_phrase(self, g: Gap) -> str:
        tol = f"{100 * self.tolerance:.1f} points"
        if g.status == "problem":
            return f"above the tolerance of {tol} and significant."
        if g.status == "inconclusive":
            return f"inconclusive: the interval reaches above the tolerance of {tol} " + (
                "but includes 0." if g.large else "and the evidence cannot rule that out."
            )
        if g.significant:
            return f"significant but within the tolerance of {tol}: not worth acting on."
        return f"within the tolerance of {tol}."

    def _value(self, name: str) -> str:
        if name == "human":
            return pct(self.human_error)
        e = self.errors[name.replace("-", "_")]
        return f"{pct(e.rate)} ({e.errors}/{e.n})"


def _interval_text(g: Gap) -> str:
    return f"[{points(g.low)}, {points(g.high)}] ({g.method})"


def _bias_verdict(found: Mapping[str, Gap]) -> str:
    problems = {k for k, g in found.items() if g.status == "problem" and k in VERDICT_GAPS}
    if {"avoidable_bias", "variance"} <= problems:
        return "high_bias_and_variance"
    for key, verdict in (("avoidable_bias", "high_bias"), ("variance", "high_variance")):
        if key in problems:
            return verdict
    if "data_mismatch" in problems:
        return "data_mismatch"
    if any(found[k].status == "inconclusive" for k in VERDICT_GAPS if k in found):
        return "inconclusive"
    return "good_fit"


def diagnose(
    errors: Mapping[str, ErrorEstimate],
    human_error: float,
    tolerance: float,
    confidence: float = 0.95,
    gradient: HealthFlag | None = None,
) -> Diagnosis:
    """Name the verdict from the gaps; a gradient flag takes precedence over high bias (a severe one,
    a non-finite or exploded norm, over any verdict)."""
    found = gaps(errors, human_error, tolerance, confidence)
    verdict = bias = _bias_verdict(found)
    if gradient is not None and (gradient.severe or bias in ("high_bias", "high_bias_and_variance")):
        verdict = gradient.verdict
    return Diagnosis(verdict, found, dict(errors), human_error, tolerance, confidence, gradient, bias)
