"""Before and after: this diagnosis against the ``reports/diagnosis.json`` it replaces.

The headline numbers are flat keys (``train_error``, ``n_train``, ``dev_error``, ...,
``avoidable_bias``, ``variance``, ...), so ``dvc metrics diff`` shows them and the next report can
read them back. An error rate moved *beyond its interval* when Newcombe's interval for the
difference (after - before) at ``report.confidence`` excludes 0; a gap ``a - b`` moved beyond its
interval when the interval of ``move(a) - move(b)`` (the same square-and-add rule) excludes 0. The
two runs are treated as independent samples: when the same dev examples are re-scored that is
conservative. Whether the applied change did what its remedy predicted is read from the previous
diagnosis's first remedy: were its keys applied (the current params hold its values), and did the
gap it addressed shrink?
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import Params
from pipeline.paths import SPLITS
from pipeline.report.changes import as_raw, get_key, same
from pipeline.report.diagnosis import GAP_NAMES, GRADIENT_VERDICTS, LEGACY_VERDICTS, Diagnosis
from pipeline.report.stats import ErrorEstimate, difference_of_differences, newcombe_interval, wilson_interval


def numbers(errors: Mapping[str, ErrorEstimate], diag: Diagnosis | None) -> dict[str, float | int]:
    """The flat headline numbers: ``<split>_error``, ``n_<split>``, ``dev_half_width`` and one key per gap."""
    out: dict[str, float | int] = {}
    for split, e in errors.items():
        out[f"{split}_error"], out[f"n_{split}"] = e.rate, e.n
    if "dev" in errors:
        out["dev_half_width"] = errors["dev"].half_width
    for key, gap in (diag.gaps if diag else {}).items():
        out[key] = gap.value
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The compact copy of a diagnosis kept as the next one's ``previous``.

    Reads the flat keys, or the nested ``errors``/``gaps`` of a diagnosis.json written before them.
    """
    errors, gaps = summary.get("errors") or {}, summary.get("gaps") or {}
    verdict = summary.get("verdict")
    out: dict[str, Any] = {"verdict": LEGACY_VERDICTS.get(verdict, verdict), "source": summary.get("source")}
    for key in ("human_error", "n_examples"):
        if _number(summary.get(key)):
            out[key] = summary[key]
    for split in SPLITS:
        nested = errors.get(split) if isinstance(errors.get(split), Mapping) else {}
        rate, n = summary.get(f"{split}_error", nested.get("rate")), summary.get(f"n_{split}", nested.get("n"))
        if _number(rate) and isinstance(n, int) and n > 0:
            out[f"{split}_error"], out[f"n_{split}"] = float(rate), n
    formulas = {}
    for key in GAP_NAMES:
        nested = gaps.get(key) if isinstance(gaps.get(key), Mapping) else {}
        value = summary.get(key, nested.get("value"))
        if _number(value):
            out[key] = float(value)
            formulas[key] = nested.get("formula")
    out["formulas"] = formulas
    first = (summary.get("remedies") or [None])[0]
    ok = isinstance(first, Mapping) and isinstance(first.get("set"), Mapping)
    out["remedy"] = {"set": dict(first["set"]), "addresses": first.get("addresses")} if ok else None
    out["next_command"] = summary.get("next_command")
    stability = summary.get("stability") if isinstance(summary.get("stability"), Mapping) else {}
    out["chosen_unstable"] = summary.get("chosen_unstable", stability.get("chosen_unstable"))
    return out


# Remedies whose prediction is that a flag goes away: headline -> whether the flag is still raised (None: unknown).
STATE_CHECKS = {
    "gradients": lambda h: None if h.get("verdict") is None else h["verdict"] in GRADIENT_VERDICTS,
    "stability": lambda h: h.get("chosen_unstable"),
}


@dataclass(frozen=True)
class Move:
    """How one error rate or gap moved, with the interval of the move (None where not comparable)."""

    before: float
    after: float
    low: float | None
    high: float | None

    @property
    def change(self) -> float:
        return self.after - self.before

    @property
    def significant(self) -> bool:
        """Beyond the intervals: the interval of the move excludes 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change, "significant": self.significant}


@dataclass(frozen=True)
class Applied:
    """Whether the previous diagnosis's first remedy was applied, and whether it did what it predicted."""

    set: dict[str, Any]
    addresses: str | None
    applied: list[str]  # keys that now hold the remedy's value
    not_applied: dict[str, Any]  # key -> the value it holds now
    outcome: str  # "met" | "not shown" | "not met" | "not applied" | "unknown"


@dataclass(frozen=True)
class Comparison:
    verdict_before: str | None
    verdict_after: str | None
    errors: dict[str, Move]
    gaps: dict[str, Move]
    gaps_measured_differently: dict[str, tuple[str | None, str | None]]  # key -> (formula before, after)
    applied: Applied | None
    data_before: tuple[str | None, int | None] = (None, None)  # (source, examples) of each diagnosis
    data_after: tuple[str | None, int | None] = (None, None)

    @property
    def data_changed(self) -> bool:
        """Another source or another number of examples: the two diagnoses measured different data."""
        return all(x is not None for x in (*self.data_before, *self.data_after)) and self.data_before != self.data_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": {"before": list(self.data_before), "after": list(self.data_after), "changed": self.data_changed},
            "verdict": {
                "before": self.verdict_before,
                "after": self.verdict_after,
                "changed": self.verdict_before != self.verdict_after,
            },
            "errors": {k: m.to_dict() for k, m in self.errors.items()},
            "gaps": {k: m.to_dict() for k, m in self.gaps.items()},
            "gaps_measured_differently": {k: list(v) for k, v in self.gaps_measured_differently.items()},
            "applied": asdict(self.applied) if self.applied else None,
        }


def _count(rate: float, n: int) -> int:
    return round(rate * n)


def compare(previous: Mapping[str, Any], current: Mapping[str, Any], params: Params) -> Comparison:
    """Compare two headlines (``headline`` of each diagnosis) at ``params.report.confidence``."""
    confidence = params.report.confidence
    errors: dict[str, Move] = {}
    for split in SPLITS:
        rate, key = f"{split}_error", f"n_{split}"
        if rate in previous and rate in current:
            a, na, b, nb = current[rate], current[key], previous[rate], previous[key]
            low, high = newcombe_interval(_count(a, na), na, _count(b, nb), nb, confidence)
            errors[split] = Move(b, a, low, high)
    gaps: dict[str, Move] = {}
    different: dict[str, tuple[str | None, str | None]] = {}
    f_before, f_after = previous.get("formulas") or {}, current.get("formulas") or {}
    for key in GAP_NAMES:
        if key not in previous or key not in current:
            continue
        formula = f_after.get(key)
        if f_before.get(key) not in (None, formula):
            different[key] = (f_before.get(key), formula)
        gaps[key] = _gap_move(key, previous, current, errors, formula, key in different)
    return Comparison(
        previous.get("verdict"),
        current.get("verdict"),
        errors,
        gaps,
        different,
        _applied(previous.get("remedy"), previous, current, errors, gaps, params),
        (previous.get("source"), previous.get("n_examples")),
        (current.get("source"), current.get("n_examples")),
    )


def _gap_move(
    key: str,
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    errors: Mapping[str, Move],
    formula: str | None,
    measured_differently: bool,
) -> Move:
    before, after = previous[key], current[key]
    if measured_differently or not formula:
        return Move(before, after, None, None)
    a, b = (side.strip().replace("-", "_") for side in formula.split(" - "))
    if b == "human":  # human error is a number, not a measurement: only the train error moved
        shift = current.get("human_error", 0.0) - previous.get("human_error", 0.0)
        m = errors.get(a)
        return Move(before, after, m.low - shift, m.high - shift) if m else Move(before, after, None, None)
    ma, mb = errors.get(a), errors.get(b)
    if ma is None or mb is None:
        return Move(before, after, None, None)
    low, high = difference_of_differences(ma.change, (ma.low, ma.high), mb.change, (mb.low, mb.high))
    return Move(before, after, low, high)


def _half_width(rate: float, n: int, confidence: float) -> float:
    low, high = wilson_interval(_count(rate, n), n, confidence)
    return (high - low) / 2


def _applied(
    remedy: Mapping[str, Any] | None,
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    errors: Mapping[str, Move],
    gaps: Mapping[str, Move],
    params: Params,
) -> Applied | None:
    if not remedy:
        return None
    raw = as_raw(params)
    changes, addresses = dict(remedy["set"]), remedy.get("addresses")
    missing = object()
    now = {k: get_key(raw, k, missing) for k in changes}
    applied = [k for k, v in changes.items() if same(now[k], v)]
    not_applied = {k: (None if now[k] is missing else now[k]) for k in changes if k not in applied}
    if not applied:
        return Applied(changes, addresses, applied, not_applied, "not applied")
    if addresses in STATE_CHECKS:  # a flag that should be gone now
        now = STATE_CHECKS[addresses](current)
        outcome = "unknown" if now is None else "not met" if now else "met"
        return Applied(changes, addresses, applied, not_applied, outcome)
    if addresses == "dev_set":
        confidence = params.report.confidence
        if "dev_error" not in previous or "dev_error" not in current:
            outcome = "unknown"
        else:
            before = _half_width(previous["dev_error"], previous["n_dev"], confidence)
            after = _half_width(current["dev_error"], current["n_dev"], confidence)
            outcome = "met" if after < before else "not met"
        return Applied(changes, addresses, applied, not_applied, outcome)
    move = errors.get("dev") if addresses == "dev_error" else gaps.get(addresses or "")
    if move is None or (move.low is None and addresses != "dev_error"):
        outcome = "unknown"
    elif move.change < 0:
        outcome = "met" if move.significant else "not shown"
    else:
        outcome = "not met"
    return Applied(changes, addresses, applied, not_applied, outcome)
