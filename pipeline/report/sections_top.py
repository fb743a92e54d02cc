"""The lines at the top of the report: the next step and the summary.

Every section is ``def xxx_section(ctx: ReportContext) -> Section`` and computes nothing that
``ReportContext`` does not hold.
"""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.diagnosis import GAP_NAMES, pct
from pipeline.report.render import Code, Section
from pipeline.report.stability import ConfigStability


def no_diagnosis(ctx: ReportContext) -> str:
    return f"No diagnosis: the train error is not available ({ctx.reasons.get('train', 'unknown reason')})."


def next_step_section(ctx: ReportContext) -> Section:
    s = Section("Next step", numbered=False)
    if ctx.next_command is None:
        why = "no diagnosis" if ctx.diagnosis is None else "no params.yaml change follows from this diagnosis"
        return s.add(f"No change to propose ({why}).", *ctx.remedy_notes)
    first = ctx.remedies[0]
    s.add("Apply the first remedy and rerun the pipeline (copy the line):", Code(ctx.next_command))
    return s.add(
        f"Why: {first.why[0].upper()}{first.why[1:].rstrip('.')}.",
        "The next report compares itself with this one (section *Before and after*).",
    )


def summary_section(ctx: ReportContext) -> Section:
    s = Section("Summary", numbered=False)
    if ctx.diagnosis is None:
        return s.add(no_diagnosis(ctx))
    s.add(f"**{ctx.diagnosis.summary()}**")
    if ctx.seed_averaged:
        n = len(ctx.chosen.runs) if ctx.chosen else 0
        s.add(
            f"The verdict reads the chosen configuration's {', '.join(ctx.seed_averaged)} errors, averaged over "
            f"{n} seeds."
        )
    if ctx.chosen is not None and ctx.chosen.unstable:
        s.add(f"**Unstable over seeds:** {stability_phrase(ctx.chosen)}; the first remedies steady the training.")
    sel = ctx.selection
    if sel is not None:
        conf = f"{100 * sel.confidence:.0f}%"
        s.add(
            f"{len(sel.tied_trials)} of the {len(sel.dev_errors) - 1} other finished trials are statistically "
            f"indistinguishable from the best (trial {sel.best_trial}; McNemar's exact test at {conf}). "
            f"Selection-corrected dev error {pct(sel.corrected)} [{pct(sel.interval[0])}, {pct(sel.interval[1])}] "
            f"against the naive best {pct(sel.naive_best)}."
        )
    return s.add("Details, the numbers behind the verdict and the remedies follow.")


def stability_phrase(c: ConfigStability) -> str:
    """Why a configuration is flagged unstable, in one clause."""
    if c.diverged:
        return f"trial {c.trial}'s configuration diverged on {len(c.diverged)} of {len(c.runs)} seeds"
    key, gap = c.gap
    return (
        f"trial {c.trial}'s train or dev error spans {100 * c.effective_spread:.1f} points across {len(c.runs)} seeds, "
        f"more than the {GAP_NAMES.get(key, key)} of {100 * gap:+.1f} points it is diagnosed with"
    )
