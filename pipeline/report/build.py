"""Lay the report out from its context: the sections (Markdown and HTML) and diagnosis.json.

``diagnosis.json`` keeps the headline numbers as flat keys (``train_error``, ``n_dev``,
``avoidable_bias``, ``variance``, ...) so ``dvc metrics diff`` shows them, beside the nested detail,
the remedies with the next command, and the comparison with the diagnosis it replaces.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.report.context import ReportContext, summary_numbers
from pipeline.report.diagnosis import TITLES
from pipeline.report.health import last_epoch_table
from pipeline.report.render import to_html, to_markdown
from pipeline.report.sections import SECTIONS
from pipeline.report.sections_top import no_diagnosis

TITLE = "Bias/variance diagnosis"


@dataclass
class Report:
    markdown: str
    html: str
    summary: dict[str, Any]  # written to reports/diagnosis.json
    context: ReportContext  # what it was built from (the stage tags the trials' runs from it)


def build_report(ctx: ReportContext) -> Report:
    sections = [section(ctx) for section in SECTIONS]
    return Report(to_markdown(TITLE, sections), to_html(TITLE, sections), summary(ctx), ctx)


def summary(ctx: ReportContext) -> dict[str, Any]:
    """The content of reports/diagnosis.json."""
    diag, rp = ctx.diagnosis, ctx.params.report
    numbers = summary_numbers(ctx)
    return {
        "verdict": numbers["verdict"],
        "source": numbers["source"],
        "title": TITLES[diag.verdict] if diag else "Unknown",
        "summary": diag.summary() if diag else no_diagnosis(ctx),
        "next_command": ctx.next_command,
        "human_error": rp.human_error,
        "tolerance": rp.tolerance,
        "confidence": rp.confidence,
        **{
            k: v
            for k, v in numbers.items()
            if k not in ("verdict", "source", "human_error", "gaps", "remedies", "next_command", "chosen_unstable")
        },
        # no "split"/"key" fields: the dict key says it, and each scalar is a column in `dvc exp show`
        "errors": {
            k: {"rate": e.rate, "n": e.n, "errors": e.errors, "low": e.low, "high": e.high}
            for k, e in ctx.errors.items()
        },
        "gaps": {
            k: {
                "value": g.value,
                "formula": g.formula,
                "low": g.low,
                "high": g.high,
                "method": g.method,
                "significant": g.significant,
                "status": g.status,
                "settle_split": g.settle_split if g.status == "inconclusive" else None,
                "settle_n": g.settle_n,
            }
            for k, g in (diag.gaps if diag else {}).items()
        },
        "seed_averaged": list(ctx.seed_averaged),
        "final_model_errors": {k: {"rate": e.rate, "n": e.n} for k, e in ctx.model_errors.items()},
        "dev_set": ctx.limits,
        "remedies": numbers["remedies"],
        "remedy_notes": ctx.remedy_notes,
        "edge_warnings": [w.message for w in ctx.edges],
        "learning_curve": [asdict(p) for p in ctx.curve],
        "regimes": dict(Counter(ctx.trial_regimes.values())),
        "importances": ctx.importances or {},
        "importance_reason": ctx.importance_reason,
        "selection": ctx.selection.to_dict() if ctx.selection else None,
        "stability": _stability(ctx),
        "gradient_health": _health(ctx),
        "error_analysis": ctx.analysis.to_dict() if ctx.analysis else {"reason": ctx.analysis_reason},
        "pruning": _effort(ctx),
        "target": ctx.inputs.target,
        "previous": ctx.previous,
        "comparison": ctx.comparison.to_dict() if ctx.comparison else None,
        "links": ctx.links.to_dict(),
    }


def _stability(ctx: ReportContext) -> dict[str, Any]:
    rp = ctx.params.report
    chosen = ctx.chosen
    return {
        "top_k": rp.stability_top_k,
        "seeds": rp.stability_seeds,
        "configurations": [c.to_dict() for c in ctx.stability],
        "chosen_unstable": bool(chosen and chosen.unstable),
        "notes": ctx.stability_notes,
    }


def _health(ctx: ReportContext) -> dict[str, Any]:
    flag = ctx.gradient
    return {
        "flag": flag.kind if flag else None,
        "layer": flag.layer if flag else None,
        "reason": flag.reason if flag else ctx.inputs.why_missing("health"),
        "last_epoch": [
            {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in asdict(r).items()}
            for r in last_epoch_table(ctx.inputs.health or [])
        ],
    }


def _effort(ctx: ReportContext) -> dict[str, Any] | None:
    e = ctx.effort
    if e is None:
        return None
    return {
        "per_state": e.per_state,
        "saved_epochs": e.saved_epochs,
        "saved_seconds": e.saved_seconds,
        "seconds_per_epoch": e.seconds_per_epoch,
    }
