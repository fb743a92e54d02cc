"""Sections looking inside the final model: its gradient health and its errors on dev.
Every section is ``def xxx_section(ctx: ReportContext) -> Section``.
"""

from __future__ import annotations

from pipeline.report import figures
from pipeline.report.context import ReportContext
from pipeline.report.diagnosis import pct
from pipeline.report.health import EXPLODED_W_NORM, FACTOR, FLOOR, last_epoch_table
from pipeline.report.render import Plot, Section, Table


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def health_section(ctx: ReportContext) -> Section:
    s = Section("Gradient health of the final model")
    rows = ctx.inputs.health
    if not rows:
        return s.add(f"Not available: {ctx.inputs.why_missing('health') or 'reports/train_health.json is empty'}.")
    s.add(
        Plot(
            figures.health_figure(rows), "update ratio (learning rate x ||dW|| / ||W||) per layer and epoch, log scale"
        )
    )
    last = last_epoch_table(rows)
    s.add(
        Table(
            ["layer", "||W||", "||dW||", "update ratio", "dead units", "saturated"],
            [
                [
                    str(r.layer),
                    _g(r.w_norm),
                    _g(r.grad_norm),
                    _g(r.update_ratio),
                    _g(r.dead_fraction),
                    _g(r.saturated_fraction),
                ]
                for r in last
            ],
        )
    )
    flag = ctx.gradient
    if flag is not None:
        s.add(f"**{flag.kind.capitalize()} gradients** (layer {flag.layer}): {flag.reason}.")
        if ctx.diagnosis is not None and ctx.diagnosis.verdict == flag.verdict:
            s.add("This takes the verdict: the remedies start with the course's fixes for it.")
    else:
        s.add("No flag: the update ratios stay within reach of each other and finite.")
    return s.add(
        f"The rules, at the last epoch: vanishing when layer 1's ratio is below the output layer's by at least "
        f"max({FACTOR:.0f}, 10^(L-1)) for L layers (more than 10x lost per layer), when no gradient flows at all, or "
        f"when the network underfits and layer 1's ratio is below {FLOOR:g}; exploding when a norm is not finite, a "
        f"weight norm exceeds {EXPLODED_W_NORM:g}, or layer 1's ratio is {FACTOR:.0f}x the output layer's and rising. "
        "With Adam or momentum the ratio measures the gradient's scale, not the step taken."
    )


def error_analysis_section(ctx: ReportContext) -> Section:
    s = Section("Error analysis (dev)")
    a = ctx.analysis
    if a is None:
        return s.add(f"Not available: {ctx.analysis_reason or 'no dev predictions of the final model'}.")
    s.add(f"The final model (`models/final`) on the {a.n} dev examples, per class:")
    s.add(
        Table(
            ["class", "dev examples", "errors", "recall", "precision"],
            [[c.label, str(c.n), str(c.errors), _p(c.recall), _p(c.precision)] for c in a.per_class],
        )
    )
    if not a.mistakes:
        s.add("No dev example is misclassified.")
    else:
        captions = [f"{m.true} -> {m.predicted} ({m.probability:.2f})" for m in a.mistakes]
        if a.images:
            s.add(Plot(figures.gallery_figure(a.images, captions), "misclassified dev examples: true -> predicted (p)"))
        s.add(
            f"The {len(a.mistakes)} most confident mistakes (dev row: true -> predicted, its probability):",
            [f"row {m.index}: {c}" for m, c in zip(a.mistakes, captions, strict=True)],
        )
        s.add("Look at them by hand: what do they share that the training data lacks?")
    s.add(
        Plot(figures.reliability_figure(a.bins, a.ece), "accuracy against predicted probability, 10 equal-width bins")
    )
    side = "overconfident" if a.overconfidence > 0 else "underconfident"
    return s.add(
        f"Expected calibration error (ECE) {a.ece:.3f}: the bins' |accuracy - mean probability|, weighted by their "
        "share of the dev examples; near 0, a predicted 0.9 is right about 9 times in 10. On average the predicted "
        f"probability is {100 * abs(a.overconfidence):.1f} points {'above' if a.overconfidence > 0 else 'below'} "
        f"the accuracy ({side} where the bars {'fall below' if a.overconfidence > 0 else 'rise above'} the diagonal)."
    )


def _p(x: float | None) -> str:
    return "-" if x is None else pct(x)
