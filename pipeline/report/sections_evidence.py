"""Sections on how far the study's numbers can be trusted: stability over seeds, ties between trials and
the selection-corrected score. Every section is ``def xxx_section(ctx: ReportContext) -> Section``.
"""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.diagnosis import GAP_NAMES, pct
from pipeline.report.render import Section, Table
from pipeline.report.sections_top import stability_phrase
from pipeline.report.stability import SEED_OFFSET, ConfigStability

MAX_ROWS = 30  # trials listed in the ties table


def _mean_range(c: ConfigStability, split: str) -> str:
    mean = c.mean(split)
    return "-" if mean is None else f"{pct(mean)} (range {100 * c.spread(split):.1f})"


def stability_section(ctx: ReportContext) -> Section:
    s = Section("Stability over seeds")
    if not ctx.stability:
        return s.add(f"Not computed: {'; '.join(ctx.stability_notes) or 'no configuration to retrain'}.")
    rp = ctx.params.report
    s.add(
        f"The {rp.stability_top_k} finished trials with the lowest dev error (and the final model's configuration) "
        f"over {rp.stability_seeds} seeds each. Seed 0 is the trial itself (its stream `[seed, n]`; its errors "
        "read from trials.csv when it scored on dev and there is no train-dev split, else retrained); seed s >= 1 "
        f"is retrained with `np.random.default_rng([seed, n, {SEED_OFFSET} + s])`, a stream no trial uses. The "
        "range is max - min over the seeds."
    )
    rows = []
    for c in ctx.stability:
        key, gap = c.gap
        state = f"diverged on {len(c.diverged)}" if c.diverged else "unstable" if c.unstable else "stable"
        rows.append(
            [
                f"{c.trial}{' (final model)' if c.chosen else ''}",
                str(len(c.runs)),
                _mean_range(c, "train"),
                *([_mean_range(c, "train_dev")] if "train_dev" in ctx.inputs.sizes else []),
                _mean_range(c, "dev"),
                f"{GAP_NAMES.get(key, key)} {100 * gap:+.1f}",
                f"{100 * c.effective_spread:.1f}",
                state,
            ]
        )
    splits = ["train", *(["train-dev"] if "train_dev" in ctx.inputs.sizes else []), "dev"]
    header = ["trial", "seeds", *(f"{k} error" for k in splits), "gap (points)", "spread (points)", "verdict"]
    s.add(Table(header, rows))
    s.add(
        "A configuration is unstable when a seed diverged, or when its spread exceeds the gap it is diagnosed with "
        f"(the larger of avoidable bias and variance of its seed means, at least the tolerance of "
        f"{100 * rp.tolerance:.1f} points). The spread is the larger range of train and dev error; the dev range "
        "counts only beyond the dev interval's half-width at the configuration's mean dev error: "
        "a small dev set moves in whole examples whatever the seed."
    )
    unstable = [stability_phrase(c) for c in ctx.stability if c.unstable]
    if unstable:
        s.add("**Unstable:**", unstable)
        s.add(
            "Its verdict depends on the seed more than on the configuration: lower the learning rate's cap "
            "(`tune.space.learning_rate.high`) or train longer (`train.epochs`); see the remedies."
        )
    else:
        s.add("Every retrained configuration is stable: its errors vary less across seeds than its gap.")
    return s


def selection_section(ctx: ReportContext) -> Section:
    s = Section("Ties and the selection-corrected score")
    sel = ctx.selection
    if sel is None:
        s.add(f"Not available: {ctx.selection_reason}.")
        if ctx.within_best_interval is not None:
            s.add(
                f"Without per-example predictions: {ctx.within_best_interval} finished trials scored within the best "
                "trial's dev interval, so the dev set cannot rank them."
            )
        return s
    conf = f"{100 * sel.confidence:.0f}%"
    n = len(sel.dev_errors)
    s.add(
        f"Each finished trial's predictions on the same {sel.n_dev} dev examples, against the best one (trial "
        f"{sel.best_trial}, {pct(sel.naive_best)}) by McNemar's exact test: the binomial test of the examples only "
        f"one of the two gets wrong. At p >= {1 - sel.confidence:.2g} the two cannot be told apart. "
        f"**{len(sel.tied_trials)} of the {n - 1} other trials are tied with the best**: the study's winner was "
        "picked partly by luck."
    )
    order = sorted(sel.dev_errors, key=lambda t: (sel.dev_errors[t], t))
    rows = [
        [
            str(t),
            pct(sel.dev_errors[t]),
            "best" if t == sel.best_trial else f"{sel.p_values[t]:.3g}",
            "-" if t == sel.best_trial else "yes" if t in sel.tied_trials else "no",
        ]
        for t in order[:MAX_ROWS]
    ]
    s.add(Table(["trial", "dev error", "McNemar p vs best", "tied with the best"], rows))
    if n > MAX_ROWS:
        s.add(f"(the {MAX_ROWS} best of {n} trials shown; diagnosis.json lists every tied trial)")
    s.add(
        f"**Selection-corrected dev error: {pct(sel.corrected)}, {conf} interval [{pct(sel.interval[0])}, "
        f"{pct(sel.interval[1])}]**, against the naive best {pct(sel.naive_best)}. The naive best is the minimum of "
        f"{n} noisy scores on one dev set, so it is optimistic. The corrected estimate is the bootstrap "
        f"bias-corrected one (BBC; Tsamardinos et al. 2018): over {sel.bootstraps} resamples of the dev examples, "
        "the trial with the lowest error on the resample is scored on the examples the resample left out; the "
        "interval is the percentile interval of those scores."
    )
    return s.add(
        "Each trial is tested against the best alone, without a correction for the number of tests, so a trial "
        "called distinguishable may still be a fluke; a tied one is certainly not shown to be worse."
    )
