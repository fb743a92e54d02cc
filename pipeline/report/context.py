"""Everything the report says, computed once: the sections only lay it out.

``build_context`` takes what the stages wrote (``ReportInputs``), the params, what the report
stage computed by training and predicting (the learning curve, ``curves.final_model_curve``; the
stability check, ``stability.stability_check``; the error analysis, ``analysis.dev_analysis``) and
the previous diagnosis's headline, and derives the errors with their intervals, the gradient-health
flag, the diagnosis, the remedies and the next command, the search-range edges, each trial's regime,
the ties and the selection-corrected score, the importances, what pruning saved and the comparison
with the previous diagnosis.

The verdict reads the **seed-averaged** train, train-dev and dev errors of the chosen configuration
(the final model's, when the stability check retrained it), on the same number of examples; the
final model's own errors (reports/metrics.json) are kept beside them, and test is always the final
model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.config import Params
from pipeline.report.analysis import DevAnalysis
from pipeline.report.changes import Remedy, next_command
from pipeline.report.compare import Comparison, compare, headline, numbers
from pipeline.report.curves import CurvePoint
from pipeline.report.diagnosis import REGIME_TAG, Diagnosis, diagnose, regime
from pipeline.report.edges import EdgeWarning, edge_warnings
from pipeline.report.evidence import dev_set_limits
from pipeline.report.health import HealthFlag, health_flag
from pipeline.report.inputs import ReportInputs, split_errors
from pipeline.report.links import RunLinks
from pipeline.report.remedies import remedies
from pipeline.report.selection import Selection, select
from pipeline.report.stability import ConfigStability
from pipeline.report.stats import ErrorEstimate, estimate
from pipeline.report.trials import Effort, TrialRow, complete, effort, importances

DIGITS = "digits"  # the one source whose human-level error the report can state


@dataclass(frozen=True)
class ReportContext:
    inputs: ReportInputs
    params: Params
    errors: dict[str, ErrorEstimate]  # split -> the error rate the verdict reads, with its Wilson interval
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
    model_errors: dict[str, ErrorEstimate] = field(default_factory=dict)  # the final model's (metrics.json)
    seed_averaged: tuple[str, ...] = ()  # the splits whose error is the chosen configuration's seed mean
    gradient: HealthFlag | None = None
    selection: Selection | None = None
    selection_reason: str = ""  # why there is no selection
    within_best_interval: int | None = None  # finished trials whose dev error lies in the best one's interval
    stability: list[ConfigStability] = field(default_factory=list)
    stability_notes: list[str] = field(default_factory=list)
    analysis: DevAnalysis | None = None
    analysis_reason: str = ""
    effort: Effort | None = None
    previous: dict[str, Any] | None = None  # the headline of the diagnosis this one replaces
    previous_note: str = ""  # why there is no previous diagnosis
    comparison: Comparison | None = None
    links: RunLinks = field(default_factory=RunLinks)  # the runs in the MLflow UI, as the report stage found them

    @property
    def source(self) -> str:
        """The data source the split was made from (normalizer.json), "unknown" without it.

        Not params.yaml's ``data.source``: that may have changed since the data was prepared, and the
        report stage does not depend on the ``data`` params."""
        return self.inputs.source or "unknown"

    @property
    def is_digits(self) -> bool:
        return self.source == DIGITS

    @property
    def chosen(self) -> ConfigStability | None:
        """The stability check of the final model's configuration, when it ran."""
        return next((c for c in self.stability if c.chosen), None)

    def headline(self) -> dict[str, Any]:
        """This diagnosis's headline numbers, in the form ``compare.headline`` reads."""
        return headline(summary_numbers(self))


def build_context(
    inputs: ReportInputs,
    params: Params,
    curve: tuple[list[CurvePoint], list[str]] = ([], []),
    previous: Mapping[str, Any] | None = None,
    previous_note: str = "",
    stability: tuple[list[ConfigStability], list[str]] = ([], []),
    analysis: tuple[DevAnalysis | None, str] = (None, ""),
) -> ReportContext:
    """Compute every number once. ``previous`` is the replaced diagnosis.json (any version of its format)."""
    rp = params.report
    found, reasons = split_errors(inputs)
    model_errors = {
        k: estimate(k, *found[k], rp.confidence) for k in ("train", "train_dev", "dev", "test") if k in found
    }
    chosen = next((c for c in stability[0] if c.chosen), None)
    errors, averaged = _seed_averaged(model_errors, chosen, rp.confidence)
    best = dict((inputs.best or {}).get("params") or {})
    flag = None
    if "train" in errors and inputs.health:
        flag = health_flag(inputs.health, errors["train"].rate - rp.human_error > rp.tolerance)
    diag = diagnose(errors, rp.human_error, rp.tolerance, rp.confidence, flag) if "train" in errors else None
    unstable = chosen.values if chosen is not None and chosen.unstable else None
    fixes, notes = remedies(diag, best, params, inputs.sizes, inputs.target, unstable) if diag else ([], [])
    trials = inputs.trials or []
    trial_regimes = {
        r.number: regime(r.train_error, r.dev_error, rp.human_error, rp.tolerance)
        for r in complete(trials)
        if r.train_error is not None and r.dev_error is not None
    }
    chosen_by = select(inputs.predictions, rp.confidence, params.seed) if inputs.predictions else None
    close = _within_best(trials, model_errors.get("dev"), rp.confidence)
    imps, why = importances(trials, params.seed) if trials else (None, inputs.why_missing("trials"))
    if imps is not None:
        imps, why = _meaningful(imps, chosen_by, close, len(complete(trials)))
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
        model_errors=model_errors,
        seed_averaged=averaged,
        gradient=flag,
        selection=chosen_by,
        selection_reason="" if chosen_by else inputs.why_missing("predictions") or "no dev predictions",
        within_best_interval=close,
        stability=list(stability[0]),
        stability_notes=list(stability[1]),
        analysis=analysis[0],
        analysis_reason=analysis[1],
        effort=effort(trials, params.train.epochs) if trials else None,
        previous_note=previous_note,
    )
    if previous is None:
        return ctx
    before = headline(previous)
    return replace(ctx, previous=before, comparison=compare(before, ctx.headline(), params))


def _seed_averaged(
    errors: dict[str, ErrorEstimate], chosen: ConfigStability | None, confidence: float
) -> tuple[dict[str, ErrorEstimate], tuple[str, ...]]:
    """The final model's errors with train, train-dev and dev replaced by the chosen configuration's seed means."""
    if chosen is None:
        return errors, ()
    out, averaged = dict(errors), []
    for split, e in errors.items():
        mean = chosen.mean(split) if split != "test" else None
        if mean is not None:
            out[split] = estimate(split, mean, e.n, confidence)
            averaged.append(split)
    return out, tuple(averaged)


def _within_best(trials: list[TrialRow], dev: ErrorEstimate | None, confidence: float) -> int | None:
    """How many finished trials scored inside the best trial's dev interval (the fallback for ties)."""
    done = complete(trials)
    if dev is None or not done:
        return None
    top = estimate("dev", min(r.value for r in done), dev.n, confidence)
    return sum(r.value <= top.high for r in done)


def _meaningful(
    imps: dict[str, float], chosen_by: Selection | None, close: int | None, n_done: int
) -> tuple[dict[str, float] | None, str]:
    """Importances only where the scores can rank the trials: not when most trials tie with the best."""
    if chosen_by is not None:
        tied, n, how = len(chosen_by.tied_trials) + 1, len(chosen_by.dev_errors), "McNemar's exact test"
    elif close is not None:
        tied, n, how = close, n_done, "their dev errors lie within the best trial's interval"
    else:
        return imps, ""
    if tied * 2 > n:
        return None, (
            f"{tied} of {n} finished trials are statistically indistinguishable from the best ({how}): their "
            "differences are noise, so an importance would rank noise"
        )
    return imps, ""


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
        "chosen_unstable": bool(ctx.chosen and ctx.chosen.unstable) if ctx.stability else None,
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


def best_run_id(ctx: ReportContext) -> str | None:
    """The MLflow run id of the best trial (best_params.json's ``trial_number``), None without one."""
    number = (ctx.inputs.best or {}).get("trial_number")
    return next((r.run_id for r in ctx.trials if r.number == number and r.run_id), None)
