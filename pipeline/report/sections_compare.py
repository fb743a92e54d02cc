"""The before-and-after section: what moved since the diagnosis this one replaces."""

from __future__ import annotations

from pipeline.paths import DIAGNOSIS_JSON
from pipeline.report.compare import Applied, Comparison, Move
from pipeline.report.context import ReportContext
from pipeline.report.diagnosis import GAP_NAMES, TITLES, pct
from pipeline.report.remedies import ADDRESSES
from pipeline.report.render import Section, Table


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _interval(m: Move) -> str:
    return "-" if m.low is None or m.high is None else f"[{_pts(m.low)}, {_pts(m.high)}]"


def _beyond(m: Move) -> str:
    if m.low is None:
        return "not comparable"
    return "yes" if m.significant else "no"


def before_after_section(ctx: ReportContext) -> Section:
    s = Section("Before and after")
    c, prev = ctx.comparison, ctx.previous
    if c is None or prev is None:
        why = ctx.previous_note or f"no {DIAGNOSIS_JSON.as_posix()} before this run"
        return s.add(
            f"Nothing to compare with ({why}). Apply the next step and rerun: this section then says which gaps "
            "moved, whether beyond their intervals, and whether the change did what its remedy predicted."
        )
    conf = f"{100 * ctx.params.report.confidence:.0f}%"
    before, after = (TITLES.get(v or "", v or "unknown") for v in (c.verdict_before, c.verdict_after))
    changed = c.verdict_before != c.verdict_after
    if c.data_changed:
        (src_a, n_a), (src_b, n_b) = c.data_before, c.data_after
        s.add(
            f"**The data changed** since the previous diagnosis (`{src_a}`, {n_a} examples -> `{src_b}`, {n_b}): "
            "the numbers below compare different data."
        )
    s.add(f"Verdict: {before} -> {after}." if changed else f"Verdict unchanged: {after}.")
    s.add(*_applied_lines(c.applied, c, prev.get("next_command")))
    if c.gaps:
        s.add(
            Table(
                ["gap", "before", "after", "change (points)", f"{conf} interval of the change", "beyond the intervals"],
                [
                    [GAP_NAMES[k], _pts(m.before), _pts(m.after), _pts(m.change), _interval(m), _beyond(m)]
                    for k, m in c.gaps.items()
                ],
            )
        )
        s.add(_moved_line(c))
    for key, (f_before, f_after) in c.gaps_measured_differently.items():
        s.add(f"{GAP_NAMES[key]} is measured differently now (`{f_before}` -> `{f_after}`): its values do not compare.")
    if c.errors:
        s.add(
            Table(
                ["split", "before", "after", "change (points)", f"{conf} interval (Newcombe)", "beyond the intervals"],
                [
                    [
                        k,
                        f"{pct(m.before)} of {prev[f'n_{k}']}",
                        f"{pct(m.after)} of {ctx.errors[k].n}",
                        _pts(m.change),
                        _interval(m),
                        _beyond(m),
                    ]
                    for k, m in c.errors.items()
                ],
            )
        )
    return s.add(
        "A move is beyond the intervals when the interval of the change excludes 0 (Newcombe's interval for two "
        "error rates; for a gap, the move of one side minus the other's). The two runs count as independent "
        "samples: re-scoring the same dev examples varies less, so the test is conservative."
    )


def _moved_line(c: Comparison) -> str:
    beyond = [f"{GAP_NAMES[k]} ({_pts(m.change)} points)" for k, m in c.gaps.items() if m.significant]
    within = [
        f"{GAP_NAMES[k]} ({_pts(m.change)})" for k, m in c.gaps.items() if not m.significant and m.low is not None
    ]
    parts = []
    if beyond:
        parts.append("Moved beyond the intervals: " + ", ".join(beyond) + ".")
    if within:
        parts.append("Within the noise: " + ", ".join(within) + ".")
    return " ".join(parts) or "No gap could be compared."


def _applied_lines(a: Applied | None, c: Comparison, command: str | None) -> list[str]:
    if a is None:
        return ["The previous diagnosis proposed no params.yaml change, so there is no prediction to check."]
    cmd = f"`{command}`" if command else "its first remedy"
    if a.outcome == "not applied":
        now = ", ".join(f"`{k}` is {v!r}" for k, v in a.not_applied.items())
        return [f"The previous next step {cmd} was not applied: {now}, not the values it set."]
    part = "" if not a.not_applied else " in part (not " + ", ".join(f"`{k}`" for k in a.not_applied) + ")"
    target = a.addresses or "?"
    lines = [f"The previous next step {cmd} was applied{part}; it predicted: {ADDRESSES.get(target, target)}."]
    return [*lines, _outcome(a, c)]


FLAGS = {"gradients": "the gradient-health flag", "stability": "the chosen configuration's instability over seeds"}


def _outcome(a: Applied, c: Comparison) -> str:
    if a.addresses in FLAGS:
        flag = FLAGS[a.addresses]
        return {"met": f"It did: {flag} is gone.", "not met": f"It did not: {flag} is still raised."}.get(
            a.outcome, f"Whether it did cannot be checked: the previous diagnosis did not record {flag}."
        )
    if a.addresses == "trial_ranking":
        return "Its effect is on how the study ranks its trials (section *Ties and the selection-corrected score*)."
    if a.addresses == "dev_set":
        dev = c.errors.get("dev")
        if a.outcome == "met":
            return "It did: the dev interval is narrower now." + (
                f" Dev error {_pts(dev.change)} points." if dev else ""
            )
        return "It did not: the dev interval is no narrower." if a.outcome == "not met" else "It cannot be checked."
    move = c.errors.get("dev") if a.addresses == "dev_error" else c.gaps.get(a.addresses or "")
    name = "dev error" if a.addresses == "dev_error" else GAP_NAMES.get(a.addresses or "", a.addresses)
    if move is None or a.outcome == "unknown":
        return f"Whether it did cannot be checked: {name} is not measured the same way in both diagnoses."
    moved = f"{name} went {_pts(move.before)} -> {_pts(move.after)} points"
    moved += f" ({_pts(move.change)}, interval {_interval(move)})"
    if a.outcome == "met":
        return f"It did: {moved}, beyond the intervals."
    if a.outcome == "not shown":
        return f"Not shown: {moved}; the interval includes 0, so the shrink may be noise."
    return f"It did not: {moved}."
