"""Stage ``report``: the bias/variance diagnosis of the study and the final model.

Reads the outputs of every earlier stage and the ``reports/diagnosis.json`` it is about to
replace (the previous diagnosis: in the workspace when ``dvc repro`` or ``dvc exp run`` reruns
this stage), retrains the final configuration for the learning curve and the best configurations
over several seeds (``report.stability_seeds``; 0 or 1 skips it), predicts dev with the final model
for the error analysis, and writes
``reports/diagnosis.md``, the self-contained ``reports/report.html`` (figures embedded, nothing
loaded from a URL) and ``reports/diagnosis.json`` (a DVC metrics file). The report links the best
trial's MLflow run and the study's parent run when the MLflow UI's address is known
(``PIPELINE_UI_URL``, else an http(s) tracking server's); the stage finds the run ids, since the
report does not talk to MLflow. Then, through ``pipeline.tracking``, it tags each trial's MLflow
run with its regime and attaches the report to the study's parent run with the selection-corrected
score and what pruning saved as metrics, unless that run is still running (a sweep in progress
owns it).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.config import Params, load_params
from pipeline.data import memory
from pipeline.errors import ConfigError, StorageError
from pipeline.io import atomic_write_bytes, atomic_write_json
from pipeline.paths import DIAGNOSIS_HTML as HTML
from pipeline.paths import DIAGNOSIS_JSON as SUMMARY
from pipeline.paths import DIAGNOSIS_MD as MARKDOWN
from pipeline.report.analysis import dev_analysis
from pipeline.report.build import Report, build_report
from pipeline.report.context import ReportContext, best_run_id, build_context, regime_tags, trial_run_ids
from pipeline.report.curves import final_model_curve, final_settings
from pipeline.report.diagnosis import REGIME_TAG
from pipeline.report.inputs import ReportInputs, load_inputs
from pipeline.report.links import RunLinks
from pipeline.report.seeds import free_cores
from pipeline.report.stability import stability_check

ARTIFACT_DIR = "report"  # the folder of the parent run's artifacts that holds the three files
OPEN_STATUSES = ("RUNNING", "SCHEDULED")  # a parent run in these states belongs to a sweep still going
UI_URL_VAR = "PIPELINE_UI_URL"  # the MLflow UI's address, for the report's links to the runs
NO_UI = (
    f"no MLflow UI address is known to link them here: set {UI_URL_VAR} to the address "
    "`python -m pipeline ui --port N` serves on (127.0.0.1:N), or track to an MLflow server (MLFLOW_TRACKING_URI)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-tracking", action="store_true", help="write the report files only; log nothing to MLflow")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    report = write_report(params, tracking=not args.no_tracking)
    print(f"report: {report.summary['title']} -> {MARKDOWN}, {HTML}, {SUMMARY}")
    parent = report.context.links.parent_run
    if parent:
        print(f"report: the study's parent run: {parent}")
    else:
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


def write_report(params: Params, root: str | Path = ".", tracking: bool = False) -> Report:
    """Build the report from the files under ``root`` and write its three files atomically.

    ``tracking``: ask MLflow for the runs to link (only when the UI's address is known)."""
    root = Path(root)
    previous, why = read_previous(root / SUMMARY)
    inputs = load_inputs(root)
    check_memory(inputs, params)
    curve = final_model_curve(inputs, params)
    stability = stability_check(inputs, params)
    ctx = build_context(inputs, params, curve, previous, why, stability, dev_analysis(inputs))
    links = run_links(ctx) if tracking else RunLinks(note="this report was written without MLflow (--no-tracking)")
    report = build_report(replace(ctx, links=links))
    atomic_write_bytes(root / MARKDOWN, report.markdown.encode("utf-8"))
    atomic_write_bytes(root / HTML, report.html.encode("utf-8"))
    atomic_write_json(root / SUMMARY, report.summary)
    return report


def check_memory(inputs: ReportInputs, params: Params) -> None:
    """DataError (exit 3) before any retraining when the learning curve or the stability fits would not
    fit in memory (``pipeline.data.memory.report_set``); without train and dev rows nothing is retrained."""
    classes = (inputs.meta or {}).get("classes")
    if "train" not in inputs.sizes or "dev" not in inputs.sizes or not classes or not inputs.n_x:
        return
    final, _ = final_settings(params, inputs.best)
    m_train, m_dev = inputs.sizes["train"], inputs.sizes["dev"]
    workers = memory.stability_workers(params, free_cores())
    ws = memory.report_set(final, params, inputs.n_x, len(classes), m_train, m_dev, workers)
    memory.check_working_set(
        ws,
        f"report: retraining on {m_train} x {inputs.n_x} rows",
        "lower report.learning_curve_fractions below 1 or set report.stability_seeds: 0, or bring fewer examples",
    )


def publish(report: Report, paths: Sequence[Path]) -> str:
    """Tag the trials' runs with their regime and log the report files to the parent run; say what was done."""
    from pipeline import tracking  # imports mlflow (~1.5 s): only when tracking is on

    run_ids = trial_run_ids(report.context)
    if not run_ids:
        return "no trial has an MLflow run id (trials.csv lacks mlflow_run_id): nothing logged to MLflow"
    tagged = tracking.tag_runs(regime_tags(report.context))
    done = f"tagged {tagged} trial runs with '{REGIME_TAG}'"
    parent = study_parent(run_ids)
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


def study_parent(run_ids: Sequence[str]) -> str | None:
    """The parent run of the first trial run that has one: the run the report is attached to and links."""
    from pipeline import tracking

    return next((p for p in map(tracking.parent_run_of, run_ids) if p), None)  # a deleted run has none


# --- links to the runs in the MLflow UI --------------------------------------------------------


def ui_base(tracking_uri: str, explicit: str | None) -> str | None:
    """The MLflow UI's address the report links to: ``explicit`` (PIPELINE_UI_URL) if set, else an
    http(s) tracking server's, else None.

    The explicit address wins: a browser may reach a tracking server by another name than the
    pipeline does. A local store has no address until ``pipeline ui`` serves it, on a port of its
    choosing, so none is guessed."""
    if explicit:
        base = web_address(explicit)
        if base is None:
            raise ConfigError(
                f"{UI_URL_VAR}={explicit!r}: give the MLflow UI's http(s) address, e.g. http://127.0.0.1:5000 "
                "(what `python -m pipeline ui --port 5000` serves), or unset it"
            )
        return base
    return web_address(tracking_uri)


def web_address(url: str) -> str | None:
    """``url`` as a link base (scheme, host, port, path; no trailing slash), None if it is not http(s).

    The user name and password of a tracking URI are dropped: the page is committed and attached to runs."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, quote(parts.path.rstrip("/"), safe="/%"), "", ""))


def run_links(ctx: ReportContext) -> RunLinks:
    """The best trial's run and the study's parent run in the MLflow UI, or why not.

    MLflow is asked only when the UI's address is known; a store that cannot be read leaves the
    report without links (publishing, next, says what failed)."""
    from pipeline import tracking  # imports mlflow (~1.5 s): only when tracking is on

    base = ui_base(tracking.tracking_uri(), os.environ.get(UI_URL_VAR))
    if base is None:
        return RunLinks(note=NO_UI)
    run_ids = trial_run_ids(ctx)
    if not run_ids:
        return RunLinks(ui=base, note="no trial has an MLflow run id (trials.csv lacks mlflow_run_id)")
    best = best_run_id(ctx)
    try:
        best_experiment = tracking.live_run_experiment(best) if best else None  # a dead server fails here, once
        parent = study_parent(run_ids)
        parent_experiment = tracking.live_run_experiment(parent) if parent else None
    except StorageError as e:
        return RunLinks(ui=base, note=f"the runs could not be read from MLflow ({e})")
    experiment = best_experiment or parent_experiment or ""
    notes = [
        why
        for broken, why in (
            (not best, "the best trial has no MLflow run id in trials.csv"),
            (best and not best_experiment, f"the best trial's run {best} is not in MLflow"),
            (not parent, "no trial run has a parent run"),
            (parent and parent_experiment != experiment, f"parent run {parent} is not in MLflow"),
        )
        if broken
    ]
    return RunLinks(
        ui=base,
        experiment_id=experiment,
        best_run_id=best if best and best_experiment else "",
        parent_run_id=parent if parent and parent_experiment == experiment else "",
        note="; ".join(notes),
    )
