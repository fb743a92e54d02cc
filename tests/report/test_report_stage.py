"""The report renders from a tiny real study; missing inputs are explained; MLflow gets the tags."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Params
from pipeline.errors import DataError
from pipeline.report.diagnosis import REGIME_TAG, TITLES, regime
from pipeline.stages.report import HTML, MARKDOWN, SUMMARY, write_report
from tests.report.conftest import RAW_PARAMS, build_project, small_params

pytestmark = pytest.mark.slow

SECTIONS = [
    "Summary",
    "1. Data and split",
    "2. Best trial and final model",
    "3. Errors with confidence intervals",
    "4. Human level, bias and variance",
    "5. Verdict and remedies",
    "6. Search-range edges",
    "7. Learning curve",
    "8. Cost curves of the final model",
    "9. Regularization path (from the trials, no retraining)",
    "10. Optimization history and parameter importances",
    "11. Trial regimes",
    "12. Confusion matrix (test)",
]


def section_bodies(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.M)[1:]
    return {parts[i]: parts[i + 1].strip() for i in range(0, len(parts), 2)}


def copy_of(project: tuple[Path, Params], tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(project[0], root)
    return root


def test_every_section_present_and_non_empty(project: tuple[Path, Params]) -> None:
    root, params = project
    report = write_report(params, root)
    md = (root / MARKDOWN).read_text()
    bodies = section_bodies(md)
    assert list(bodies) == SECTIONS
    assert all(bodies.values()), [k for k, v in bodies.items() if not v]
    assert "No train-dev split" in bodies["1. Data and split"]  # the section that cannot be computed says why
    assert "data mismatch" in bodies["4. Human level, bias and variance"]
    assert "dev set is too small" in bodies["3. Errors with confidence intervals"]  # 30 dev images
    assert "Not available" not in md and "Not computed" not in bodies["7. Learning curve"]

    page = (root / HTML).read_text()
    assert page.count("data:image/png;base64,") == 7
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)

    summary = json.loads((root / SUMMARY).read_text())
    assert summary["verdict"] in TITLES and summary == report.summary
    assert set(summary["errors"]) == {"train", "dev", "test"}
    assert [p["m"] for p in summary["learning_curve"]] == [75, 300]
    assert sum(summary["regimes"].values()) == 4
    e = summary["errors"]["dev"]
    assert e["low"] <= e["rate"] <= e["high"] and e["n"] == 30


def test_train_dev_split_gives_data_mismatch(tmp_path: Path) -> None:
    root = build_project(tmp_path, small_params(), n_trials=2, train_dev=True)
    report = write_report(small_params(), root)
    assert set(report.summary["gaps"]) == {"avoidable_bias", "variance", "data_mismatch", "dev_overfit"}
    assert report.summary["gaps"]["variance"]["formula"] == "train-dev - train"
    bodies = section_bodies(report.markdown)
    assert (
        "Importances not computed: only 2 finished trial(s)"
        in bodies["10. Optimization history and parameter importances"]
    )


def test_missing_inputs_say_why(project: tuple[Path, Params], tmp_path: Path) -> None:
    root = copy_of(project, tmp_path)
    for rel in ("reports/train_history.json", "reports/study/trials.csv", "reports/metrics.json"):
        (root / rel).unlink()
    bodies = section_bodies(write_report(project[1], root).markdown)
    assert "reports/train_history.json not found" in bodies["8. Cost curves of the final model"]
    assert "reports/study/trials.csv not found" in bodies["9. Regularization path (from the trials, no retraining)"]
    assert "reports/metrics.json not found" in bodies["12. Confusion matrix (test)"]
    assert "No diagnosis" in bodies["Summary"]


def test_malformed_inputs_are_data_errors(project: tuple[Path, Params], tmp_path: Path) -> None:
    root = copy_of(project, tmp_path)
    (root / "reports/metrics.json").write_text(json.dumps({"train_error": 1.5, "n_train": 10}))
    with pytest.raises(DataError, match=r"metrics\.json"):
        write_report(project[1], root)
    (root / "reports/metrics.json").unlink()
    (root / "reports/study/trials.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"trials\.csv: missing column"):
        write_report(project[1], root)


def test_cli_writes_the_report(project: tuple[Path, Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_of(project, tmp_path)
    (root / "params.yaml").write_text(yaml.safe_dump(RAW_PARAMS))
    (root / MARKDOWN).unlink(missing_ok=True)
    monkeypatch.chdir(root)
    assert main(["report", "--no-tracking"]) == 0
    assert (root / MARKDOWN).read_text().startswith("# Bias/variance diagnosis")


def test_publish_tags_trials_and_logs_to_the_parent(
    project: tuple[Path, Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from pipeline.report.publish import backfill_regimes, publish, tag_regimes
    from pipeline.report.trials import read_trials

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    root, params = copy_of(project, tmp_path), project[1]
    client = MlflowClient(uri)
    exp = client.create_experiment("report-test", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, run_name="sweep").info.run_id
    trials_csv = root / "reports/study/trials.csv"
    df = pd.read_csv(trials_csv)
    df["user_attrs_mlflow_run_id"] = [
        client.create_run(exp, run_name=f"trial-{n}", tags={"mlflow.parentRunId": parent}).info.run_id
        for n in df["number"]
    ]
    df.to_csv(trials_csv, index=False)

    report = write_report(params, root)
    message = publish([root / MARKDOWN, root / HTML, root / SUMMARY], report.summary, report.regimes, report.run_ids)
    assert parent in message
    rp = params.report
    for row in read_trials(trials_csv):
        tags = client.get_run(row.run_id).data.tags
        assert tags[REGIME_TAG] == regime(row.train_error, row.dev_error, rp.human_error, rp.tolerance)
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert logged == {"report/diagnosis.md", "report/report.html", "report/diagnosis.json"}
    assert client.get_run(parent).data.tags["diagnosis"] == report.summary["verdict"]
    # the back-fill alone re-tags every trial run of the study (a 100-point tolerance: all good fits)
    assert backfill_regimes(read_trials(trials_csv), rp.human_error, 1.0) == 4
    assert {client.get_run(r).data.tags[REGIME_TAG] for r in report.run_ids} == {"good fit"}
    assert tag_regimes({"0" * 32: "overfit", report.run_ids[0]: "overfit"}) == 1  # a deleted run is skipped
