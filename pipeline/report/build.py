"""Assemble the report from the stages' outputs: the numbers (diagnosis.json) and the sections."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.config import Params
from pipeline.data.store import load_split
from pipeline.report import figures
from pipeline.report.curves import CurvePoint, learning_curve, read_curve
from pipeline.report.diagnosis import GAP_NAMES, TITLES, Diagnosis, dev_set_limits, diagnose, pct, regime
from pipeline.report.inputs import ReportInputs, confusion, split_errors
from pipeline.report.remedies import EdgeWarning, Remedy, edge_warnings, remedies
from pipeline.report.render import Plot, Section, Table, to_html, to_markdown
from pipeline.report.stats import ErrorEstimate, estimate
from pipeline.report.trials import TrialRow, complete, importances
from pipeline.study.space import apply_params, architecture, fit_options

TITLE = "Bias/variance diagnosis"
HUMAN_ERROR_NOTE = (
    "Human-level error stands in for Bayes error (`report.human_error`, default 0.005): people misread about "
    "0.5% of the 8x8 sklearn digits, whose few pixels make a handful of 1/7, 4/9 and 3/8 images ambiguous. "
    "Set it for your data (e.g. about 0.0 for clean photos of one object, higher for noisy labels); with no "
    "baseline use 0.0, which counts all train error as avoidable bias."
)


@dataclass
class Report:
    markdown: str
    html: str
    summary: dict[str, Any]  # written to reports/diagnosis.json
    regimes: dict[str, str]  # trial MLflow run id -> regime, for tagging
    run_ids: list[str]  # every trial's MLflow run id (pruned and failed ones too)


def build_report(inputs: ReportInputs, params: Params) -> Report:
    """Compute every number, then lay out the sections; sections that cannot be computed say why."""
    rp = params.report
    found, reasons = split_errors(inputs)
    errors = {k: estimate(k, *found[k], rp.confidence) for k in ("train", "train_dev", "dev", "test") if k in found}
    best = dict((inputs.best or {}).get("params") or {})
    diag = diagnose(errors, rp.human_error, rp.tolerance) if "train" in errors else None
    fixes = remedies(diag, best, params) if diag else []
    edges = edge_warnings(best, params.tune.space)
    limits = dev_set_limits(errors, rp.tolerance, rp.confidence)
    trials = inputs.trials or []
    trial_regimes = {
        r.number: regime(r.train_error, r.dev_error, rp.human_error, rp.tolerance)
        for r in complete(trials)
        if r.train_error is not None and r.dev_error is not None
    }
    curve, curve_notes = _learning_curve(inputs, params, best)
    imps, imp_reason = importances(trials, params.seed) if trials else (None, inputs.why_missing("trials"))

    sections = [
        _summary(diag, reasons),
        _data(inputs),
        _best(inputs, best),
        _errors(errors, reasons, limits, rp.human_error, rp.confidence, rp.tolerance),
        _gaps(diag, reasons),
        _verdict(diag, fixes),
        _edges(edges, best, inputs),
        _curve(curve, curve_notes, rp.human_error, rp.tolerance, rp.confidence, limits),
        _costs(inputs),
        _reg_path(trials, inputs),
        _history(trials, imps, imp_reason, errors.get("dev"), inputs),
        _regimes(trials, trial_regimes, rp.tolerance, inputs),
        _confusion(inputs),
    ]
    summary = {
        "verdict": diag.verdict if diag else "unknown",
        "title": TITLES[diag.verdict] if diag else "Unknown",
        "summary": diag.summary() if diag else _no_diagnosis(reasons),
        "human_error": rp.human_error,
        "tolerance": rp.tolerance,
        "confidence": rp.confidence,
        # no "split"/"key" fields: the dict key says it, and each scalar is a column in `dvc exp show`
        "errors": {
            k: {"rate": e.rate, "n": e.n, "errors": e.errors, "low": e.low, "high": e.high} for k, e in errors.items()
        },
        "gaps": {
            k: {"value": g.value, "formula": g.formula, "significant": g.significant, "status": g.status}
            for k, g in (diag.gaps if diag else {}).items()
        },
        "dev_set": limits,
        "edge_warnings": [w.message for w in edges],
        "remedies": [asdict(r) for r in fixes],
        "learning_curve": [asdict(p) for p in curve],
        "regimes": dict(Counter(trial_regimes.values())),
        "importances": imps or {},
    }
    run_regimes = {r.run_id: trial_regimes[r.number] for r in trials if r.run_id and r.number in trial_regimes}
    run_ids = [r.run_id for r in trials if r.run_id]
    return Report(to_markdown(TITLE, sections), to_html(TITLE, sections), summary, run_regimes, run_ids)


def _no_diagnosis(reasons: dict[str, str]) -> str:
    return f"No diagnosis: the train error is not available ({reasons.get('train', 'unknown reason')})."


def _summary(diag: Diagnosis | None, reasons: dict[str, str]) -> Section:
    s = Section("Summary")
    if diag is None:
        return s.add(_no_diagnosis(reasons))
    return s.add(f"**{diag.summary()}**", "Details, the numbers behind the verdict and the remedies follow.")


def _data(inputs: ReportInputs) -> Section:
    s = Section("1. Data and split")
    meta = inputs.meta or {}
    if not inputs.sizes:
        return s.add(f"Not available: {inputs.why_missing('data')}.")
    classes = [str(c) for c in meta.get("classes", [])]
    s.add(
        f"Source: `{meta.get('source', 'unknown')}`; image shape {tuple(meta.get('image_shape', ())) or 'unknown'}; "
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
    dup = (inputs.split or {}).get("duplicates")
    if isinstance(dup, dict):
        s.add(f"Duplicate images across splits: {dup.get('count', 0)} (from reports/split.json).")
    if "train_dev" not in inputs.sizes:
        s.add("No train-dev split (`split.train_dev` is 0): variance and data mismatch cannot be told apart.")
    return s


def _best(inputs: ReportInputs, best: dict[str, Any]) -> Section:
    s = Section("2. Best trial and final model")
    if inputs.best is None:
        s.add(f"Best trial: not available: {inputs.why_missing('best')}.")
    else:
        number = inputs.best.get("trial_number")
        row = next((r for r in inputs.trials or [] if r.number == number), None)
        took = f", {row.seconds:.1f} s" if row and row.seconds is not None else ""
        value = inputs.best.get("value")
        dev = pct(value) if value is not None else "?"
        s.add(f"Study `{inputs.best.get('study_name')}`, trial {number}: dev error {dev}{took}.")
        s.add(Table(["parameter", "value"], [[k, _fmt(v)] for k, v in sorted(best.items())]))
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


def _errors(
    errors: dict[str, ErrorEstimate],
    reasons: dict[str, str],
    limits: dict[str, Any],
    human: float,
    confidence: float,
    tol: float,
) -> Section:
    s = Section("3. Errors with confidence intervals")
    if not errors:
        return s.add(f"Not available: {reasons.get('train', 'no error rates')}.")
    c = f"{100 * confidence:.0f}%"
    s.add(
        Table(
            ["split", "examples", "errors", "error", f"{c} Wilson interval", "± points"],
            [
                [k, str(e.n), str(e.errors), pct(e.rate), f"[{pct(e.low)}, {pct(e.high)}]", f"{100 * e.half_width:.1f}"]
                for k, e in errors.items()
            ],
        )
    )
    s.add(*(f"{k}: not available: {why}." for k, why in reasons.items()))
    s.add(Plot(figures.errors_figure(errors, human, confidence), "error per split with its interval"))
    if limits.get("too_small"):
        s.add(
            f"**The dev set is too small for fine comparisons.** With {limits['n']} examples its {c} interval is "
            f"±{100 * limits['half_width']:.1f} points, wider than the tolerance of {100 * tol:.1f} points. "
            f"About {limits['needed_n']} dev examples would resolve a gap of that size. It cannot support:",
            limits["unsupported"],
        )
    elif "n" in limits:
        width = f"±{100 * limits['half_width']:.1f} points"
        s.add(f"The dev set ({limits['n']} examples, {width}) is large enough to resolve gaps of the tolerance.")
    return s


def _gaps(diag: Diagnosis | None, reasons: dict[str, str]) -> Section:
    s = Section("4. Human level, bias and variance")
    s.add(HUMAN_ERROR_NOTE)
    if diag is None:
        return s.add(_no_diagnosis(reasons))
    rows = [
        [GAP_NAMES[g.key], f"`{g.formula}`", f"{100 * g.value:+.2f}", "yes" if g.significant else "no", g.status]
        for g in diag.gaps.values()
    ]
    s.add(Table(["gap", "formula", "points", "significant", "status"], rows))
    s.add(diag.explain())
    needs = {
        "variance": "the dev (or train-dev) error",
        "data_mismatch": "a train-dev split (`split.train_dev` > 0) and the dev error",
        "dev_overfit": "the dev and test errors",
    }
    s.add(*(f"{GAP_NAMES[k]}: not computed, needs {why}." for k, why in needs.items() if k not in diag.gaps))
    return s


def _verdict(diag: Diagnosis | None, fixes: list[Remedy]) -> Section:
    s = Section("5. Verdict and remedies")
    if diag is None:
        return s.add("No verdict without the train error.")
    s.add(f"**{diag.summary()}**")
    if fixes:
        s.add("Remedies mapped onto this project's knobs and search space (edit `params.yaml`, then `dvc repro`):")
        s.add(
            Table(
                ["addresses", "remedy", "params.yaml key", "change"],
                [[r.problem, r.action, f"`{r.knob}`", r.change] for r in fixes],
            )
        )
    return s


def _edges(edges: list[EdgeWarning], best: dict[str, Any], inputs: ReportInputs) -> Section:
    s = Section("6. Search-range edges")
    if not best:
        return s.add(f"Not available: {inputs.why_missing('best') or 'best_params.json has no params'}.")
    if not edges:
        return s.add("No best parameter sits at the edge of its search range: the ranges contain the optimum found.")
    return s.add(
        "**Warning:** a best value at the edge of its range means the optimum may lie outside it.",
        [w.message for w in edges],
    )


def _learning_curve(inputs: ReportInputs, params: Params, best: dict[str, Any]) -> tuple[list[CurvePoint], list[str]]:
    """Retrain the final configuration on growing fractions of train (the same settings the train stage used)."""
    if "train" not in inputs.sizes or "dev" not in inputs.sizes:
        return [], [f"needs the train and dev splits: {inputs.why_missing('data') or 'dev split missing'}"]
    if not params.report.learning_curve_fractions:
        return [], ["report.learning_curve_fractions is empty"]
    from_study = bool(best) and params.train.use_study_best
    config = apply_params(params, best) if from_study else params
    number = (inputs.best or {}).get("trial_number")
    # the train stage's stream: the best trial's when it trains on the study's settings
    seed = [params.seed, number] if from_study and isinstance(number, int) else params.seed
    X, y = load_split("train", inputs.root)
    X_dev, y_dev = load_split("dev", inputs.root)
    n_classes = len((inputs.meta or {}).get("classes") or []) or int(max(y.max(), y_dev.max())) + 1
    arch = architecture(config.model, X.shape[1], n_classes)
    return learning_curve(
        X,
        y,
        X_dev,
        y_dev,
        arch,
        fit_options(config.train),
        params.report.learning_curve_fractions,
        seed,
    )


def _curve(
    points: list[CurvePoint], notes: list[str], human: float, tol: float, confidence: float, limits: dict[str, Any]
) -> Section:
    s = Section("7. Learning curve")
    if not points:
        return s.add(f"Not computed: {'; '.join(notes)}.")
    s.add(
        "The best configuration retrained on growing fractions of the train split "
        "(`report.learning_curve_fractions`); dev error on the full dev split."
    )
    figure = figures.learning_curve_figure(points, human, limits.get("n"), confidence)
    s.add(Plot(figure, "train and dev error against the number of training examples (dev with its interval)"))
    s.add(
        Table(
            ["fraction", "m", "train error", "dev error"],
            [[f"{p.fraction:g}", str(p.m), pct(p.train_error), pct(p.dev_error)] for p in points],
        )
    )
    s.add(read_curve(points, human, tol, limits.get("half_width", 0.0)))
    s.add(
        "Every point trains for the same number of epochs, so a smaller subset also gets fewer mini-batch updates: "
        "a curve that is still falling may partly reflect training length."
    )
    if limits.get("too_small"):
        s.add(
            f"Caution: each dev point is measured on {limits['n']} examples (±{100 * limits['half_width']:.1f} points)."
        )
    return s.add(*notes)


def _costs(inputs: ReportInputs) -> Section:
    s = Section("8. Cost curves of the final model")
    h = inputs.history
    if not h:
        return s.add(f"Not available: {inputs.why_missing('history') or 'the history is empty'}.")
    s.add(Plot(figures.cost_figure(h), "train and dev cost per epoch (log scale), dev error on the right axis"))
    last = h[-1]
    dev = f", dev cost {last['dev_cost']:.4f}" if last.get("dev_cost") is not None else ""
    return s.add(f"{len(h)} epochs; last train cost {last['train_cost']:.4f}{dev}.")


def _l2(r: TrialRow) -> float | None:
    if r.params.get("l2") == "off":
        return 0.0  # the 'off' switch: no L2 term
    return r.params.get("l2_lambda")


def _reg_path(trials: list[TrialRow], inputs: ReportInputs) -> Section:
    s = Section("9. Regularization path (from the trials, no retraining)")
    if not trials:
        return s.add(f"Not available: {inputs.why_missing('trials')}.")
    rows = [
        {
            "l2_lambda": _l2(r),
            "keep_prob": r.params.get("keep_prob"),
            "train_error": r.train_error,
            "dev_error": r.dev_error,
        }
        for r in complete(trials)
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


def _history(
    trials: list[TrialRow], imps: dict[str, float] | None, why: str, dev: ErrorEstimate | None, inputs: ReportInputs
) -> Section:
    s = Section("10. Optimization history and parameter importances")
    if not trials:
        return s.add(f"Not available: {inputs.why_missing('trials')}.")
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
        if dev is not None:
            top = estimate("dev", min(r.value for r in done), dev.n)
            close = sum(r.value <= top.high for r in done)
            s.add(
                f"{close} of {len(done)} finished trials scored within the best trial's dev interval "
                f"({pct(top.rate)}, interval up to {pct(top.high)} on {dev.n} examples): the dev set cannot rank "
                "them, and the best score is optimistic (the minimum of many noisy scores)."
            )
    if imps:
        s.add(Plot(figures.importance_figure(imps), "parameter importances (optuna)"))
        return s.add(Table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imps.items()]))
    return s.add(f"Importances not computed: {why}.")


def _regimes(trials: list[TrialRow], regimes: dict[int, str], tol: float, inputs: ReportInputs) -> Section:
    s = Section("11. Trial regimes")
    if not trials:
        return s.add(f"Not available: {inputs.why_missing('trials')}.")
    if not regimes:
        return s.add("No finished trial recorded train_error and dev_error, so none could be labelled.")
    counts = Counter(regimes.values())
    s.add(
        "Each finished trial labelled by the verdict's rule on its own train and dev error "
        f"(tolerance {100 * tol:.1f} points); the label is the MLflow tag `regime` on the trial's run, "
        "so runs can be filtered by it."
    )
    s.add(
        Table(
            ["regime", "trials", "trial numbers"],
            [
                [k, str(n), ", ".join(str(t) for t, v in sorted(regimes.items()) if v == k)]
                for k, n in counts.most_common()
            ],
        )
    )
    return s


def _confusion(inputs: ReportInputs) -> Section:
    s = Section("12. Confusion matrix (test)")
    cm, labels = confusion(inputs)
    if cm is None:
        return s.add(
            f"Not available: {inputs.why_missing('metrics') or 'reports/metrics.json has no confusion_matrix'}."
        )
    s.add(Plot(figures.confusion_figure(cm, labels), "rows: true class, columns: predicted class"))
    wrong = [(int(cm[i][j]), labels[i], labels[j]) for i, j in np.ndindex(len(cm), len(cm)) if i != j and cm[i][j]]
    if not wrong:
        return s.add("No test example was misclassified.")
    top = ", ".join(f"{t}->{p} ({n})" for n, t, p in sorted(wrong, reverse=True)[:5])
    return s.add(f"Most frequent confusions (true->predicted): {top}.")
