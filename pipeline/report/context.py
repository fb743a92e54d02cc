"""Everything the report says, computed once: the sections only lay it out.

``build_context`` takes what the stages wrote (``ReportInputs``), the params, the learning-curve
points (computed by ``curves.final_model_curve``: the report's only training, done by the stage)
and the previous diagnosis's headline, and derives the errors with their intervals, the diagnosis,
the remedies and the next command, the search-range edges, each trial's regime, the importances
and the comparison with the previous diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.config import Params
from pipeline.report.changes import next_command
from pipeline.report.compare import Comparison, compare, headline, numbers
from pipeline.report.curves import CurvePoint
from pipeline.report.diagnosis import REGIME_TAG, Diagnosis, dev_set_limits, diagnose, regime
from pipeline.report.edges import EdgeWarning, edge_warnings
from pipeline.report.inputs import ReportInputs, split_errors
from pipeline.report.remedies import Remedy, remedies
from pipeline.report.stats import ErrorEstimate, estimate
from pipeline.report.trials import TrialRow, complete, importances

DIGITS = "digits"  # the one source whose human-level error the report can state


@dataclass(frozen=True)
class ReportContext:
    inputs: ReportInputs
    params: Params
    errors: dict[str, ErrorEstimate]  # split -> error rate with its Wilson interval
    reasons: dict[str, str]  # split -> why its error is not available
    best: dict[str, Any]  # the best trial's parameters ({} without a study)
    diagnosis: Diagnosis | None  # None without the train error
    remedies: list[Remedy]
    remedy_notes: list[str]  # what no params.yaml key can do, and remedies left out
    next_command: str | None  # the `dvc exp run -S ...` line applying the first remedy
    edges: list[EdgeWarning]
    limits: dict[str, Any]  # what the dev set can and cannot support
    trials: list[TrialRow]
    trial_regimes: dict[int, str]  # trial number -> regime, finished trials with both errors
    importances: dict[str, float] | None
    importance_reason: str  # why there are no importances
    curve: list[CurvePoint] = field(default_factory=list)
    curve_notes: list[str] = field(default_factory=list)
    previous: dict[str, Any] | None = None  # the headline of the diagnosis this one replaces
    previous_note: str = ""  # why there is no previous diagnosis
    comparison: Comparison | None = None

    @property
    def source(self) -> str:
        """The data source the split was made from (normalizer.json), "unknown" without it.

        Not params.yaml's ``data.source``: that may have changed since the data was prepared, and the
        report stage does not depend on the ``data`` params."""
        return self.inputs.source or "unknown"

    @property
    def is_digits(self) -> bool:
        return self.source == DIGITS

    def headline(self) -> dict[str, Any]:
        """This diagnosis's headline numbers, in the form ``compare.headline`` reads."""
        return headline(summary_numbers(self))


def build_context(
    inputs: ReportInputs,
    params: Params,
    curve: tuple[list[CurvePoint], list[str]] = ([], []),
    previous: Mapping[str, Any] | None = None,
    previous_note: str = "",
) -> ReportContext:
    """Compute every number once. ``previous`` is the replaced diagnosis.json (any version of its format)."""
    rp = params.report
    found, reasons = split_errors(inputs)
    errors = {k: estimate(k, *found[k], rp.confidence) for k in ("train", "train_dev", "dev", "test") if k in found}
    best = dict((inputs.best or {}).get("params") or {})
    diag = diagnose(errors, rp.human_error, rp.tolerance) if "train" in errors else None
    fixes, notes = remedies(diag, best, params, inputs.sizes) if diag else ([], [])
    trials = inputs.trials or []
    trial_regimes = {
        r.number: regime(r.train_error, r.dev_error, rp.human_error, rp.tolerance)
        for r in complete(trials)
        if r.train_error is not None and r.dev_error is not None
    }
    imps, why = importances(trials, params.seed) if trials else (None, inputs.why_missing("trials"))
    ctx = ReportContext(
        inputs=inputs,
        params=params,
        errors=errors,
        reasons=reasons,
        best=best,
        diagnosis=diag,
        remedies=fixes,
        remedy_notes=notes,
        next_command=next_command(fixes[0].set) if fixes else None,
        edges=edge_warnings(best, params.tune.space),
        limits=dev_set_limits(errors, rp.tolerance, rp.confidence),
        trials=trials,
        trial_regimes=trial_regimes,
        importances=imps,
        importance_reason=why,
        curve=list(curve[0]),
        curve_notes=list(curve[1]),
        previous_note=previous_note,
    )
    if previous is None:
        return ctx
    before = headline(previous)
    return replace(ctx, previous=before, comparison=compare(before, ctx.headline(), params))


def summary_numbers(ctx: ReportContext) -> dict[str, Any]:
    """The diagnosis.json fields the headline is read from: verdict, flat numbers, gaps, remedies."""
    diag = ctx.diagnosis
    return {
        "verdict": diag.verdict if diag else "unknown",
        "source": ctx.source,
        "n_examples": ctx.inputs.total,
        "human_error": ctx.params.report.human_error,
        **numbers(ctx.errors, diag),
        "gaps": {k: {"value": g.value, "formula": g.formula} for k, g in (diag.gaps if diag else {}).items()},
        "remedies": [{"set": r.set, "addresses": r.addresses, "why": r.why} for r in ctx.remedies],
        "next_command": ctx.next_command,
    }


def regime_tags(ctx: ReportContext) -> dict[str, dict[str, str]]:
    """MLflow run id -> ``{"regime": label}`` for every finished trial that has a run and both errors."""
    return {
        r.run_id: {REGIME_TAG: ctx.trial_regimes[r.number]}
        for r in ctx.trials
        if r.run_id and r.number in ctx.trial_regimes
    }


def trial_run_ids(ctx: ReportContext) -> list[str]:
    """Every trial's MLflow run id (pruned and failed ones too): any of them leads to the parent run."""
    return [r.run_id for r in ctx.trials if r.run_id]
