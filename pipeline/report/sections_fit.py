"""Sections on the final model's fit: the data, the errors, the gaps, the verdict, the search-range edges.

Every section is ``def xxx_section(ctx: ReportContext) -> Section`` and computes nothing that
``ReportContext`` does not hold; the renderer numbers them.
"""

from __future__ import annotations

from typing import Any

from pipeline.paths import SPLIT_REPORT
from pipeline.report import figures
from pipeline.report.context import ReportContext
from pipeline.report.diagnosis import GAP_NAMES, pct
from pipeline.report.links import runs_line
from pipeline.report.remedies import describe
from pipeline.report.render import Plot, Section, Table
from pipeline.report.sections_top import no_diagnosis

DIGITS_HUMAN_NOTE = (
    "Human-level error stands in for Bayes error (`report.human_error` = {h}): people misread about 0.5% of the "
    "8x8 scikit-learn digits, whose few pixels make a handful of 1/7, 4/9 and 3/8 images ambiguous."
)
HUMAN_NOTE = (
    "Human-level error stands in for Bayes error (`report.human_error` = {h}). `report.human_error`: set it to "
    "the error of a careful person on this data; with no baseline use 0.0, which counts all train error as "
    "avoidable bias."
)


def data_section(ctx: ReportContext) -> Section:
    s = Section("Data and split")
    inputs = ctx.inputs
    meta = inputs.meta or {}
    if not inputs.sizes:
        return s.add(f"Not available: {inputs.why_missing('data')}.")
    classes = [str(c) for c in meta.get("classes", [])]
    s.add(
        f"Source: `{ctx.source}`; image shape {tuple(meta.get('image_shape', ())) or 'unknown'}; "
        f"{inputs.n_x} features; {len(classes) or len(inputs.balance.get('train', {}))} classes."
    )
    name = dict(enumerate(classes))  # label index -> class name
    rows = [
        [
            split,
            str(n),
            f"({n}, {inputs.n_x})",
            " ".join(f"{name.get(c, c)}:{k}" for c, k in inputs.balance[split].items()),
        ]
        for split, n in inputs.sizes.items()
    ]
    s.add(Table(["split", "examples", "X shape", "class balance (class:count)"], rows))
    split = inputs.split or {}
    dup = split.get("duplicates")
    if isinstance(dup, dict):
        s.add(f"Duplicate images across splits: {dup.get('count', 0)} (from {SPLIT_REPORT.as_posix()}).")
    if isinstance(split.get("dropped_duplicates"), int) and split["dropped_duplicates"]:
        s.add(
            f"{split['dropped_duplicates']} later copies of identical images were dropped before splitting "
            f"(`split.duplicates`: {split.get('duplicates_policy', 'drop')})."
        )
    if inputs.target:
        s.add(*_distributions(ctx))
    if "train_dev" not in inputs.sizes:
        s.add("No train-dev split (`split.train_dev` is 0): variance and data mismatch cannot be told apart.")
    return s


def _distributions(ctx: ReportContext) -> list[str]:
    """The two distributions of a split with a target source (``data.target``)."""
    t, split = ctx.inputs.target or {}, ctx.inputs.split or {}
    n_target = t.get("n_examples")
    primary = split.get("primary") if isinstance(split.get("primary"), dict) else {}
    n_primary = primary.get("n_examples", ctx.inputs.total - n_target if isinstance(n_target, int) else "?")
    where = f" at `{primary['path']}`" if primary.get("path") else ""
    lines = [
        f"**Two distributions.** Train and train-dev come from the primary source `{primary.get('source', ctx.source)}`"
        f"{where} ({n_primary} examples); dev and test from the target, the distribution the model will serve: "
        f"`{t.get('source')}` at `{t.get('path')}` ({n_target} examples).",
    ]
    if t.get("in_train"):
        lines.append(
            f"{t['in_train']} target examples were moved into training "
            f"(`split.target_train` = {t.get('target_train')})."
        )
    lines.append(
        "Data mismatch = dev - train-dev compares the two distributions"
        + (
            " (section *Human level, bias and variance*)."
            if "train_dev" in ctx.inputs.sizes
            else "; it needs a train-dev slice (`split.train_dev` > 0)."
        )
    )
    return lines


def best_section(ctx: ReportContext) -> Section:
    s = Section("Best trial and final model")
    inputs, best = ctx.inputs, ctx.best
    if inputs.best is None:
        s.add(f"Best trial: not available: {inputs.why_missing('best')}.")
    else:
        number = inputs.best.get("trial_number")
        row = next((r for r in ctx.trials if r.number == number), None)
        took = f", {row.seconds:.1f} s" if row and row.seconds is not None else ""
        value = inputs.best.get("value")
        dev = pct(value) if value is not None else "?"
        s.add(f"Study `{inputs.best.get('study_name')}`, trial {number}: dev error {dev}{took}.")
        s.add(Table(["parameter", "value"], [[k, _fmt(v)] for k, v in sorted(best.items())]))
    s.add(runs_line(ctx.links, (inputs.best or {}).get("trial_number", "?")))
    t, model = inputs.train, (inputs.model or {})
    if t is None:
        return s.add(f"Final model: not available: {inputs.why_missing('train')}.")
    layers = model.get("architecture", {}).get("layer_dims")
    s.add(
        f"Final model: layers {layers or '?'}, {t.get('epochs')} epochs (best dev cost at epoch {t.get('best_epoch')}"
        f"{', stopped early' if t.get('stopped_early') else ''}), {t.get('seconds')} s of training; "
        f"settings from {t.get('settings_from', '?')}."
    )
    trial_dev, final_dev = (inputs.best or {}).get("value"), t.get("dev_error")
    if trial_dev is not None and final_dev is not None and abs(final_dev - trial_dev) > 1e-9:
        s.add(
            f"The final model's dev error is {pct(final_dev)} against the trial's {pct(trial_dev)}: retraining the "
            "same settings gave a different score, so treat a trial's score as one noisy draw "
            "(seed, dropout, batch order)."
        )
    return s


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def errors_section(ctx: ReportContext) -> Section:
    s = Section("Errors with confidence intervals")
    errors, limits, rp = ctx.errors, ctx.limits, ctx.params.report
    if not errors:
        return s.add(f"Not available: {ctx.reasons.get('train', 'no error rates')}.")
    c = f"{100 * rp.confidence:.0f}%"
    s.add(
        Table(
            ["split", "examples", "errors", "error", f"{c} Wilson interval", "± points"],
            [
                [k, str(e.n), str(e.errors), pct(e.rate), f"[{pct(e.low)}, {pct(e.high)}]", f"{100 * e.half_width:.1f}"]
                for k, e in errors.items()
            ],
        )
    )
    s.add(*(f"{k}: not available: {why}." for k, why in ctx.reasons.items()))
    if ctx.seed_averaged:
        rows = [
            [k, pct(ctx.model_errors[k].rate), pct(ctx.errors[k].rate), f"{100 * ctx.chosen.spread(k):.1f}"]
            for k in ctx.seed_averaged
            if ctx.chosen is not None
        ]
        s.add(
            "The rates above are the chosen configuration's means over the stability check's seeds (section "
            "*Stability over seeds*), on the same examples; the final model is one of many draws:",
            Table(["split", "final model", "seed mean", "range over seeds (points)"], rows),
        )
    s.add(Plot(figures.errors_figure(errors, rp.human_error, rp.confidence), "error per split with its interval"))
    if limits.get("too_small"):
        s.add(
            f"**The dev set is too small for fine comparisons.** With {limits['n']} examples its {c} interval is "
            f"±{100 * limits['half_width']:.1f} points, wider than the tolerance of {100 * rp.tolerance:.1f} points. "
            f"About {limits['needed_n']} dev examples would resolve a gap of that size. It cannot support:",
            limits["unsupported"],
        )
    elif "n" in limits:
        width = f"±{100 * limits['half_width']:.1f} points"
        s.add(f"The dev set ({limits['n']} examples, {width}) is large enough to resolve gaps of the tolerance.")
    return s


def gaps_section(ctx: ReportContext) -> Section:
    s = Section("Human level, bias and variance")
    h = pct(ctx.params.report.human_error)
    s.add((DIGITS_HUMAN_NOTE if ctx.is_digits else HUMAN_NOTE).format(h=h))
    diag = ctx.diagnosis
    if diag is None:
        return s.add(no_diagnosis(ctx))
    conf = f"{100 * ctx.params.report.confidence:.0f}%"
    rows = [
        [
            GAP_NAMES[g.key],
            f"`{g.formula}`",
            f"{100 * g.value:+.2f}",
            f"[{100 * g.low:+.2f}, {100 * g.high:+.2f}] {g.method}",
            "yes" if g.significant else "no",
            g.status,
            _settle(g.settle_split, g.settle_n) if g.status == "inconclusive" else "",
        ]
        for g in diag.gaps.values()
    ]
    header = ["gap", "formula", "points", f"{conf} interval", "significant", "status", "would settle it"]
    s.add(Table(header, rows))
    s.add(diag.explain())
    s.add(
        "A gap is significant when its interval excludes 0; it is a problem when it is also above the tolerance, "
        "fine when its whole interval lies within the tolerance, and inconclusive otherwise. The interval is "
        "Newcombe's for two error rates (the train rate's own interval against the fixed human level), exact "
        "(Clopper-Pearson per rate, combined conservatively) when a side has fewer than 5 errors or 5 correct answers."
    )
    needs = {
        "variance": "the dev (or train-dev) error",
        "data_mismatch": "a train-dev split (`split.train_dev` > 0) and the dev error",
        "dev_overfit": "the dev and test errors",
    }
    s.add(*(f"{GAP_NAMES[k]}: not computed, needs {why}." for k, why in needs.items() if k not in diag.gaps))
    return s


def verdict_section(ctx: ReportContext) -> Section:
    s = Section("Verdict and remedies")
    diag = ctx.diagnosis
    if diag is None:
        return s.add("No verdict without the train error.")
    s.add(f"**{diag.summary()}**")
    if ctx.remedies:
        s.add(
            "Each remedy is a change of `params.yaml` keys; applied (`dvc exp run -S ...`, or edit params.yaml and "
            "`dvc repro`), it changes the study's settings, so new trials run. The first one is the next step above."
        )
        s.add(
            Table(
                ["addresses", "change", "why"],
                [[_addresses(r.addresses), describe(r, ctx.params), r.why] for r in ctx.remedies],
            )
        )
    else:
        s.add("No params.yaml change is proposed.")
    return s.add(*ctx.remedy_notes)


def _settle(split: str, n: int | None) -> str:
    return f"no {split} set of any size" if n is None else f"about {n} {split} examples"


ADDRESS_NAMES = {
    "dev_set": "dev set too small",
    "trial_ranking": "trials cannot be ranked",
    "dev_error": "refine a good fit",
    "gradients": "gradient health",
    "stability": "unstable over seeds",
}


def _addresses(key: str) -> str:
    return GAP_NAMES.get(key, ADDRESS_NAMES.get(key, key))


def edges_section(ctx: ReportContext) -> Section:
    s = Section("Search-range edges")
    if not ctx.best:
        why = ctx.inputs.why_missing("best") or "best_params.json has no params"
        return s.add(f"Not available: {why}.")
    if not ctx.edges:
        return s.add("No best parameter sits at the edge of its search range: the ranges contain the optimum found.")
    return s.add(
        "**Warning:** a best value at the edge of its range means the optimum may lie outside it.",
        [w.message for w in ctx.edges],
    )
