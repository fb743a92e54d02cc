"""Stage ``report``: the bias/variance diagnosis of the study and the final model.

Reads the outputs of every earlier stage; writes ``reports/diagnosis.md``, the self-contained
``reports/report.html`` (figures embedded, no external URL) and ``reports/diagnosis.json`` (the
verdict and its numbers, a DVC metrics file); then tags each trial's MLflow run with its regime
and attaches the report to the study's parent run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.io import atomic_write_bytes, atomic_write_json
from pipeline.paths import DIAGNOSIS_HTML as HTML
from pipeline.paths import DIAGNOSIS_JSON as SUMMARY
from pipeline.paths import DIAGNOSIS_MD as MARKDOWN
from pipeline.report.build import Report, build_report
from pipeline.report.inputs import load_inputs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-tracking", action="store_true", help="write the report files only; log nothing to MLflow")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    report = write_report(params)
    print(f"report: {report.summary['title']} -> {MARKDOWN}, {HTML}, {SUMMARY}")
    if not args.no_tracking:
        from pipeline.report.publish import publish  # mlflow only when tracking

        print("report: " + publish([MARKDOWN, HTML, SUMMARY], report.summary, report.regimes, report.run_ids))
    return 0


def write_report(params: Params, root: str | Path = ".") -> Report:
    """Build the report from the files under ``root`` and write its three files atomically."""
    root = Path(root)
    report = build_report(load_inputs(root), params)
    atomic_write_bytes(root / MARKDOWN, report.markdown.encode("utf-8"))
    atomic_write_bytes(root / HTML, report.html.encode("utf-8"))
    atomic_write_json(root / SUMMARY, json.loads(json.dumps(report.summary)))
    return report
