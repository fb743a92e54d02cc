"""Stage ``report``: the bias/variance diagnosis of the study and the final model.

Reads the outputs of every earlier stage and the ``reports/diagnosis.json`` it is about to
replace (the previous diagnosis: in the workspace when ``dvc repro`` or ``dvc exp run`` reruns
this stage), retrains the final configuration for the learning curve and the best configurations
over several seeds (``report.stability_seeds``; 0 or 1 skips it), predicts dev with the final model
for the error analysis, and writes
``reports/diagnosis.md``, the self-contained ``reports/report.html`` (figures embedded, no
external URL) and ``reports/diagnosis.json`` (a DVC metrics file). Then, through
``pipeline.tracking``, it tags each trial's MLflow run with its regime and attaches the report to
the study's parent run with the selection-corrected score and what pruning saved as metrics,
unless that run is still running (a sweep in progress owns it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Params, load_params
from pipeline.io import atomic_write_bytes, atomic_write_json
from pipeline.paths import DIAGNOSIS_HTML as HTML
from pipeline.paths import DIAGNOSIS_JSON as SUMMARY
from pipeline.paths import DIAGNOSIS_MD as MARKDOWN
from pipeline.report.analysis import dev_analysis
from pipeline.report.build import Report, build_report
from pipeline.report.context import ReportContext, build_context, regime_tags, trial_run_ids
from pipeline.report.curves import final_model_curve
from pipeline.report.diagnosis import REGIME_TAG
from pipeline.report.inputs import load_inputs
from pipeline.report.stability import stability_check

ARTIFACT_DIR = "report"  # the folder of the parent run's artifacts that holds the three files
OPEN_STATUSES = ("RUNNING", "SCHEDULED")  # a parent run in these states belongs to a sweep still going


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-tracking", action="store_true", help="write the report files only; log nothing to MLflow")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    report = write_report(params)
    print(f"report: {report.summary['title']} -> {MARKDOWN}, {HTML}, {SUMMARY}")
    print("report: browse the study's runs with `python -m pipeline ui`")
    if report.summary.get("next_command"):
        print(f"report: next step: {report.summary['next_command']}")
    if not args.no_tracking:
        print("report: " + publish(report, [MARKDOWN, HTML, SUMMARY]))
    return 0


def read_previous(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The diagnosis about to be replaced, or None and why (absent, or unreadable: it is overwritten anyway)."""
    if not path.exists():
        return None, f"no {SUMMARY.as_posix()} before this run"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"the previous {SUMMARY.as_posix()} could not be read ({type(e).__name__})"
    if not isinstance(doc, dict):
        return None, f"the previous {SUMMARY.as_posix()} is not an object"
    return doc, ""


def write_report(params: Params, root: str | Path = ".") -> Report:
    """Build the report from the files under ``root`` and write its three files atomically."""
    root = Path(root)
    previous, why = read_previous(root / SUMMARY)
    inputs = load_inputs(root)
    curve = final_model_curve(inputs, params)
    stability = stability_check(inputs, params)
    ctx = build_context(inputs, params, curve, previous, why, stability, dev_analysis(inputs))
    report = build_report(ctx)
    atomic_write_bytes(root / MARKDOWN, report.markdown.encode("utf-8"))
    atomic_write_bytes(root / HTML, report.html.encode("utf-8"))
    atomic_write_json(root / SUMMARY, report.summary)
    return report


def publish(report: Report, paths: Sequence[Path]) -> str:
    """Tag the trials' runs with their regime and log the report files to the parent run; say what was done."""
    from pipeline import tracking  # imports mlflow (~1.5 s): only when tracking is on

    run_ids = trial_run_ids(report.context)
    if not run_ids:
        return "no trial has an MLflow run id (trials.csv lacks mlflow_run_id): nothing logged to MLflow"
    tagged = tracking.tag_runs(regime_tags(report.context))
    done = f"tagged {tagged} trial runs with '{REGIME_TAG}'"
    parent = next((p for p in map(tracking.parent_run_of, run_ids) if p), None)  # a deleted run has none
    if parent is None:
        return f"{done}; no parent run found, so the report was not attached"
    status = tracking.run_status(parent)
    if status is None:
        return f"{done}; parent run {parent} was deleted, so the report was not attached"
    if status in OPEN_STATUSES:
        return (
            f"{done}; the report was not attached to parent run {parent} (it is {status}: a sweep is still using "
            "it); rerun the report after it ends"
        )
    summary = report.summary
    metrics = {f"diagnosis_{key}": float(gap["value"]) for key, gap in (summary.get("gaps") or {}).items()}
    metrics |= run_metrics(report.context)
    tracking.log_to_run(
        parent,
        metrics=metrics,
        tags={"diagnosis": str(summary.get("verdict"))},
        files=list(paths),
        artifact_dir=ARTIFACT_DIR,
    )
    return f"{done}; report logged to parent run {parent}"


def run_metrics(ctx: ReportContext) -> dict[str, float]:
    """The selection-corrected score and what pruning saved, as the parent run's metrics."""
    out = ctx.selection.metrics() if ctx.selection else {}
    return out | (ctx.effort.metrics() if ctx.effort else {})
