"""Sections on the study and the training: learning curve, costs, regularization path, history, regimes,
confusion matrix. Every section is ``def xxx_section(ctx: ReportContext) -> Section``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.paths import METRICS
from pipeline.report import figures
from pipeline.report.context import ReportContext
from pipeline.report.curves import read_curve
from pipeline.report.diagnosis import pct
from pipeline.report.inputs import confusion
from pipeline.report.render import Plot, Section, Table
from pipeline.report.stats import estimate
from pipeline.report.trials import TrialRow, complete

TOP_CONFUSIONS = 5  # the most frequent (true, predicted) pairs named under the matrix


def learning_curve_section(ctx: ReportContext) -> Section:
    s = Section("Learning curve")
    points, notes, rp, limits = ctx.curve, ctx.curve_notes, ctx.params.report, ctx.limits
    if not points:
        return s.add(f"Not computed: {'; '.join(notes) or 'no points'}.")
    s.add(
        "The final model's configuration and random stream retrained on growing fractions of the train split "
        "(`report.learning_curve_fractions`); dev error on the full dev split. The full-size point is the final model."
    )
    figure = figures.learning_curve_figure(points, rp.human_error, limits.get("n"), rp.confidence)
    s.add(Plot(figure, "train and dev error against the number of training examples (dev with its interval)"))
    s.add(
        Table(
            ["fraction", "m", "train error", "dev error"],
            [[f"{p.fraction:g}", str(p.m), pct(p.train_error), pct(p.dev_error)] for p in points],
        )
    )
    s.add(read_curve(points, rp.human_error, rp.tolerance, limits.get("half_width", 0.0)))
    s.add(
        "Every point trains for the same number of epochs, so a smaller subset also gets fewer mini-batch updates: "
        "a curve that is still falling may partly reflect training length."
    )
    if limits.get("too_small"):
        s.add(
            f"Caution: each dev point is measured on {limits['n']} examples (±{100 * limits['half_width']:.1f} points)."
        )
    return s.add(*notes)


def costs_section(ctx: ReportContext) -> Section:
    s = Section("Cost curves of the final model")
    h = ctx.inputs.history
    if not h:
        return s.add(f"Not available: {ctx.inputs.why_missing('history') or 'the history is empty'}.")
    s.add(Plot(figures.cost_figure(h), "train and dev cost per epoch (log scale), dev error on the right axis"))
    last = h[-1]
    dev = f", dev cost {last['dev_cost']:.4f}" if last.get("dev_cost") is not None else ""
    return s.add(f"{len(h)} epochs; last train cost {last['train_cost']:.4f}{dev}.")


def _l2(r: TrialRow) -> float | None:
    if r.params.get("l2") == "off":
        return 0.0  # the 'off' switch: no L2 term
    return r.params.get("l2_lambda")


def regularization_section(ctx: ReportContext) -> Section:
    s = Section("Regularization path (from the trials, no retraining)")
    if not ctx.trials:
        return s.add(f"Not available: {ctx.inputs.why_missing('trials')}.")
    rows = [
        {
            "l2_lambda": _l2(r),
            "keep_prob": r.params.get("keep_prob"),
            "train_error": r.train_error,
            "dev_error": r.dev_error,
        }
        for r in complete(ctx.trials)
        if r.train_error is not None and r.dev_error is not None
    ]
    if not rows:
        return s.add("Not available: no finished trial recorded train_error and dev_error user attributes.")
    s.add(
        Plot(
            figures.regularization_figure(rows),
            "train and dev error of each finished trial against l2_lambda and keep_prob",
        )
    )
    return s.add(
        f"{len(rows)} finished trials. Other parameters vary between the points, so read trends, not single points: "
        "train error rising with lambda (or falling keep_prob) while dev error stays flat means the regularization "
        "is only costing bias."
    )


def history_section(ctx: ReportContext) -> Section:
    s = Section("Optimization history and parameter importances")
    trials, dev = ctx.trials, ctx.errors.get("dev")
    if not trials:
        return s.add(f"Not available: {ctx.inputs.why_missing('trials')}.")
    states = Counter(r.state for r in trials)
    s.add("Trials: " + ", ".join(f"{n} {st.lower()}" for st, n in sorted(states.items())) + ".")
    done = sorted(complete(trials), key=lambda r: r.number)
    if done:
        s.add(
            Plot(
                figures.history_figure([r.number for r in done], [r.value for r in done]),
                "each finished trial's dev error and the best so far",
            )
        )
        if ctx.selection is not None:
            sel = ctx.selection
            s.add(
                f"{len(sel.tied_trials)} of the {len(sel.dev_errors) - 1} other finished trials are tied with the best "
                "by McNemar's exact test (section *Ties and the selection-corrected score*)."
            )
        elif dev is not None:
            top = estimate("dev", min(r.value for r in done), dev.n, ctx.params.report.confidence)
            close = sum(r.value <= top.high for r in done)
            s.add(
                f"{close} of {len(done)} finished trials scored within the best trial's dev interval "
                f"({pct(top.rate)}, interval up to {pct(top.high)} on {dev.n} examples): the dev set cannot rank "
                "them, and the best score is optimistic (the minimum of many noisy scores)."
            )
    if ctx.importances:
        s.add(Plot(figures.importance_figure(ctx.importances), "parameter importances (optuna)"))
        return s.add(Table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in ctx.importances.items()]))
    return s.add(f"Importances not computed: {ctx.importance_reason}.")


def regimes_section(ctx: ReportContext) -> Section:
    s = Section("Trial regimes")
    regimes = ctx.trial_regimes
    if not ctx.trials:
        return s.add(f"Not available: {ctx.inputs.why_missing('trials')}.")
    if not regimes:
        return s.add("No finished trial recorded train_error and dev_error, so none could be labelled.")
    counts = Counter(regimes.values())
    s.add(
        "Each finished trial labelled by the verdict's rule on its own train and dev error "
        f"(tolerance {100 * ctx.params.report.tolerance:.1f} points); the label is the MLflow tag `regime` on the "
        "trial's run, so runs can be filtered by it."
    )
    rows = [
        [k, str(n), ", ".join(str(t) for t, v in sorted(regimes.items()) if v == k)] for k, n in counts.most_common()
    ]
    return s.add(Table(["regime", "trials", "trial numbers"], rows))


def confusion_section(ctx: ReportContext) -> Section:
    s = Section("Confusion matrix (test)")
    cm, labels = confusion(ctx.inputs)
    if cm is None:
        why = ctx.inputs.why_missing("metrics") or f"{METRICS.as_posix()} has no confusion_matrix"
        return s.add(f"Not available: {why}.")
    s.add(Plot(figures.confusion_figure(cm, labels), "rows: true class, columns: predicted class"))
    wrong = [(int(cm[i][j]), labels[i], labels[j]) for i, j in np.ndindex(len(cm), len(cm)) if i != j and cm[i][j]]
    if not wrong:
        return s.add("No test example was misclassified.")
    top = ", ".join(f"{t}->{p} ({n})" for n, t, p in sorted(wrong, reverse=True)[:TOP_CONFUSIONS])
    return s.add(f"Most frequent confusions (true->predicted): {top}.")


def effort_section(ctx: ReportContext) -> Section:
    s = Section("Trial effort and pruning")
    e = ctx.effort
    if e is None:
        why = ctx.inputs.why_missing("trials") or "trials.csv records neither epochs_trained nor duration_s"
        return s.add(f"Not available: {why}.")
    rows = [
        [
            state.lower(),
            str(int(v["trials"])),
            str(int(v["epochs"])),
            f"{v['seconds']:.1f}",
            "-" if v["seconds_per_epoch"] is None else f"{v['seconds_per_epoch']:.3f}",
        ]
        for state, v in sorted(e.per_state.items())
    ]
    s.add(Table(["state", "trials", "epochs", "seconds", "seconds per epoch"], rows))
    pruned = e.per_state.get("PRUNED", {}).get("trials", 0)
    if not pruned:
        return s.add("No trial was pruned, so pruning saved nothing.")
    total = e.spent_seconds + e.saved_seconds
    share = (
        f" ({100 * e.saved_seconds / total:.0f}% of what training every trial to the end would take)" if total else ""
    )
    per = f" at {e.seconds_per_epoch:.3f} s per epoch (the mean over all trials)" if e.seconds_per_epoch else ""
    return s.add(
        f"Pruning stopped {int(pruned)} trials early and saved about {e.saved_epochs} epochs, {e.saved_seconds:.1f} s"
        f"{per}{share}."
    )
