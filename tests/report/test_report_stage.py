"""The report renders from a tiny real study; missing inputs are explained; the previous diagnosis is
compared; MLflow gets the tags, and the report only a finished parent run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Params, params_from_dict
from pipeline.errors import DataError
from pipeline.report.compare import headline
from pipeline.report.diagnosis import REGIME_TAG, TITLES, regime
from pipeline.report.trials import read_trials
from pipeline.stages.report import HTML, MARKDOWN, SUMMARY, UI_URL_VAR, publish, write_report
from tests.lazy import lazy
from tests.report.conftest import RAW_PARAMS, build_project, small_params

pytestmark = pytest.mark.slow

SECTIONS = [  # the renderer numbers all but the first two
    "Next step",
    "Summary",
    "Data and split",
    "Best trial and final model",
    "Errors with confidence intervals",
    "Human level, bias and variance",
    "Verdict and remedies",
    "Before and after",
    "Stability over seeds",
    "Ties and the selection-corrected score",
    "Search-range edges",
    "Learning curve",
    "Cost curves of the final model",
    "Gradient health of the final model",
    "Regularization path (from the trials, no retraining)",
    "Optimization history and parameter importances",
    "Trial effort and pruning",
    "Trial regimes",
    "Error analysis (dev)",
    "Confusion matrix (test)",
]

pd = lazy("pandas")  # imported when a test first uses it


def section_bodies(md: str) -> dict[str, str]:
    """Section title (without the renderer's number) -> its text."""
    parts = re.split(r"^## (?:\d+\. )?(.+)$", md, flags=re.M)[1:]
    return {parts[i]: parts[i + 1].strip() for i in range(0, len(parts), 2)}


def copy_of(project: tuple[Path, Params], tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(project[0], root)
    return root


def test_every_section_present_and_non_empty(project: tuple[Path, Params]) -> None:
    root, params = project
    (root / SUMMARY).unlink(missing_ok=True)
    report = write_report(params, root)
    md = (root / MARKDOWN).read_text()
    assert re.findall(r"^## (\d+)\. ", md, flags=re.M) == [str(i) for i in range(1, len(SECTIONS) - 1)]
    bodies = section_bodies(md)
    assert list(bodies) == SECTIONS
    assert all(bodies.values()), [k for k, v in bodies.items() if not v]
    assert "No train-dev split" in bodies["Data and split"]  # the section that cannot be computed says why
    assert "data mismatch" in bodies["Human level, bias and variance"]
    assert "dev set is too small" in bodies["Errors with confidence intervals"]  # 30 dev images
    assert "Not available" not in md and "Not computed" not in bodies["Learning curve"]
    assert "Nothing to compare with (no reports/diagnosis.json before this run)" in bodies["Before and after"]
    assert f"```sh\n{report.summary['next_command']}\n```" in bodies["Next step"]

    page = (root / HTML).read_text()
    # errors, learning curve, costs, gradient health, regularization, history, gallery, reliability, confusion
    # (no importances: 4 trials have too few distinct dev errors)
    assert page.count("data:image/png;base64,") == 9
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)

    summary = json.loads((root / SUMMARY).read_text())
    assert summary["verdict"] in TITLES and summary == report.summary
    assert set(summary["errors"]) == {"train", "dev", "test"}
    assert summary["n_dev"] == 30 and summary["dev_error"] == summary["errors"]["dev"]["rate"]  # flat for DVC
    first = summary["remedies"][0]
    assert set(first) == {"set", "addresses", "why"} and summary["next_command"].startswith("dvc exp run -S ")
    assert [p["m"] for p in summary["learning_curve"]] == [75, 300]
    assert sum(summary["regimes"].values()) == 4
    e = summary["errors"]["dev"]
    assert e["low"] <= e["rate"] <= e["high"] and e["n"] == 30
    stability = summary["stability"]
    assert len(stability["configurations"]) == 3 and sum(c["chosen"] for c in stability["configurations"]) == 1
    assert summary["seed_averaged"] == ["train", "dev"]  # the verdict reads the chosen configuration's seed means
    trials = {r.number: r for r in read_trials(root / "reports/study/trials.csv")}
    for c in stability["configurations"]:  # seed 0 is the trial as the study measured it, not retrained
        first = c["runs"][0]
        assert (first["train"], first["dev"]) == (trials[c["trial"]].train_error, trials[c["trial"]].dev_error)
        assert [r["seed"] for r in c["runs"]] == [0, 1, 2]
    assert summary["selection"]["n_trials"] == 4 and summary["selection"]["n_dev"] == 30
    assert len(summary["gradient_health"]["last_epoch"]) == 3  # two hidden layers and the output
    analysis = summary["error_analysis"]
    assert analysis["n_dev"] == 30 and len(analysis["per_class"]) == 10 and 0 <= analysis["ece"] <= 1
    assert summary["pruning"]["per_state"]["COMPLETE"]["epochs"] == 4 * 8


def test_stability_off(project: tuple[Path, Params], tmp_path: Path) -> None:
    root = copy_of(project, tmp_path)
    params = params_from_dict({**RAW_PARAMS, "report": {**RAW_PARAMS["report"], "stability_seeds": 0}})
    summary = write_report(params, root).summary
    assert summary["stability"]["configurations"] == [] and summary["seed_averaged"] == []
    assert summary["stability"]["notes"] == ["report.stability_seeds is 0: the stability check is off"]
    assert summary["train_error"] == summary["final_model_errors"]["train"]["rate"]


def test_train_dev_split_gives_data_mismatch(tmp_path: Path) -> None:
    root = build_project(tmp_path, small_params(), n_trials=2, train_dev=True)
    report = write_report(small_params(), root)
    assert set(report.summary["gaps"]) == {"avoidable_bias", "variance", "data_mismatch", "dev_overfit"}
    assert report.summary["gaps"]["variance"]["formula"] == "train-dev - train"
    bodies = section_bodies(report.markdown)
    assert (
        "Importances not computed: only 2 finished trial(s)" in bodies["Optimization history and parameter importances"]
    )


def test_missing_inputs_say_why(project: tuple[Path, Params], tmp_path: Path) -> None:
    root = copy_of(project, tmp_path)
    for rel in ("reports/train_history.json", "reports/study/trials.csv", "reports/metrics.json"):
        (root / rel).unlink()
    bodies = section_bodies(write_report(project[1], root).markdown)
    assert "reports/train_history.json not found" in bodies["Cost curves of the final model"]
    assert "reports/study/trials.csv not found" in bodies["Regularization path (from the trials, no retraining)"]
    assert "reports/metrics.json not found" in bodies["Confusion matrix (test)"]
    assert "No diagnosis" in bodies["Summary"] and "No change to propose (no diagnosis)" in bodies["Next step"]


def test_the_previous_diagnosis_is_read_before_it_is_replaced(project: tuple[Path, Params], tmp_path: Path) -> None:
    root, params = copy_of(project, tmp_path), project[1]
    (root / SUMMARY).unlink(missing_ok=True)
    first = write_report(params, root).summary
    second = write_report(params, root)
    assert second.summary["previous"] == json.loads(json.dumps(headline(first)))
    c = second.summary["comparison"]
    assert c["verdict"]["changed"] is False and c["applied"]["outcome"] == "not applied"  # nothing was applied
    assert all(m["change"] == 0 and not m["significant"] for m in c["gaps"].values())
    assert "Verdict unchanged" in section_bodies(second.markdown)["Before and after"]
    (root / SUMMARY).write_text("{not json")
    third = write_report(params, root)
    assert third.summary["previous"] is None
    assert "could not be read (JSONDecodeError)" in section_bodies(third.markdown)["Before and after"]


def test_malformed_inputs_are_data_errors(project: tuple[Path, Params], tmp_path: Path) -> None:
    root = copy_of(project, tmp_path)
    (root / "reports/metrics.json").write_text(json.dumps({"train_error": 1.5, "n_train": 10}))
    with pytest.raises(DataError, match=r"metrics\.json"):
        write_report(project[1], root)
    (root / "reports/metrics.json").unlink()
    (root / "reports/study/trials.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"trials\.csv: missing column"):
        write_report(project[1], root)


def test_cli_writes_the_report(
    project: tuple[Path, Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_of(project, tmp_path)
    (root / "params.yaml").write_text(yaml.safe_dump(RAW_PARAMS))
    (root / MARKDOWN).unlink(missing_ok=True)
    monkeypatch.chdir(root)
    assert main(["report", "--no-tracking"]) == 0
    assert (root / MARKDOWN).read_text().startswith("# Bias/variance diagnosis")
    command = json.loads((root / SUMMARY).read_text())["next_command"]
    assert f"report: next step: {command}" in capsys.readouterr().out


def test_publish_tags_trials_and_logs_only_to_a_finished_parent_which_the_page_links(
    project: tuple[Path, Params], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from pipeline import tracking
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
    monkeypatch.setenv(UI_URL_VAR, "http://127.0.0.1:5000")  # where `pipeline ui --port 5000` would serve
    report = write_report(params, root, tracking=True)
    files = [root / MARKDOWN, root / HTML, root / SUMMARY]
    # the page links the parent run the report is attached to, and the best trial's run
    best = df.loc[df["number"] == json.loads((root / "reports/study/best_params.json").read_text())["trial_number"]]
    runs = f"http://127.0.0.1:5000/#/experiments/{exp}/runs"
    page = (root / HTML).read_text()
    assert f'href="{runs}/{parent}"' in page and f'href="{runs}/{best["user_attrs_mlflow_run_id"].item()}"' in page
    assert json.loads((root / SUMMARY).read_text())["links"]["parent_run"] == f"{runs}/{parent}"

    message = publish(report, files)  # the sweep's parent run is still RUNNING: tag the trials, attach nothing
    assert f"not attached to parent run {parent} (it is RUNNING" in message
    assert client.list_artifacts(parent) == [] and "diagnosis" not in client.get_run(parent).data.tags
    rp = params.report
    for row in read_trials(trials_csv):
        tags = client.get_run(row.run_id).data.tags
        assert tags[REGIME_TAG] == regime(row.train_error, row.dev_error, rp.human_error, rp.tolerance)

    client.set_terminated(parent)
    assert parent in publish(report, files)
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert logged == {"report/diagnosis.md", "report/report.html", "report/diagnosis.json"}
    assert client.get_run(parent).data.tags["diagnosis"] == report.summary["verdict"]
    metrics = client.get_run(parent).data.metrics
    assert metrics["selection_corrected"] == pytest.approx(report.summary["selection"]["corrected"])
    assert metrics["selection_tied_trials"] == len(report.summary["selection"]["tied_trials"])
    assert metrics["pruning_saved_s"] == 0.0 and metrics["trials_complete_epochs"] == 32
    run_ids = list(df["user_attrs_mlflow_run_id"])
    assert (
        tracking.tag_runs({"0" * 32: {REGIME_TAG: "overfit"}, run_ids[0]: {REGIME_TAG: "overfit"}}) == 1
    )  # gone: skipped

    client.delete_run(parent)  # a parent deleted since: nothing to attach to
    assert f"parent run {parent} was deleted" in publish(report, files)
