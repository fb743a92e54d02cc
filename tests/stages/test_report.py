"""The report stage's links to the runs: the MLflow UI's address, and the run ids found in the store.

The report's context comes from constructed numbers (no training); the runs live in a private
sqlite store. Nothing is fetched: a tracking server's address only becomes the links' base.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import Params
from pipeline.errors import ConfigError
from pipeline.report.build import build_report
from pipeline.report.context import ReportContext, build_context
from pipeline.report.links import BROWSE
from pipeline.report.trials import TrialRow
from pipeline.stages.report import UI_URL_VAR, run_links, ui_base
from tests.lazy import lazy
from tests.mlflow_store import fresh_store
from tests.report.helpers import inputs

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it
pytestmark = pytest.mark.usefixtures("blank_figures")  # the links are tested, not the plots

BEST = 1  # the best trial's number in best_params.json


class Runs:
    """A study's runs in a sqlite store: an experiment, the sweep's parent run, a child run per trial."""

    def __init__(self, uri: str, folder: Path) -> None:
        self.uri = uri
        self.client = tracking.MlflowClient(uri)
        self.client.create_experiment("other", artifact_location=str(folder / "other"))  # the study's id is not 1
        self.experiment = self.client.create_experiment("links-test", artifact_location=str(folder / "artifacts"))
        self.parent = self.client.create_run(self.experiment, run_name="sweep-links-test").info.run_id
        self.trials = [
            self.client.create_run(
                self.experiment, run_name=f"trial-{n}", tags={"mlflow.parentRunId": self.parent}
            ).info.run_id
            for n in range(3)
        ]


@pytest.fixture
def runs(mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    uri = fresh_store(mlflow_template, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(UI_URL_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    return Runs(uri, tmp_path)


def context(run_ids: list[str | None]) -> ReportContext:
    """A report context whose trials.csv rows carry ``run_ids`` and whose best trial is ``BEST``."""
    given = inputs((30, 3000), (300, 3000))
    given.trials = [
        TrialRow(n, "COMPLETE", 0.1 - 0.01 * (n == BEST), {}, 0.01, 0.1, run_id) for n, run_id in enumerate(run_ids)
    ]
    given.best = {"study_name": "links-test", "trial_number": BEST, "value": 0.09, "params": {}}
    return build_context(given, Params())


def html_with(ctx: ReportContext) -> tuple[str, dict]:
    """The page and diagnosis.json's ``links`` of the report built with the stage's links."""
    report = build_report(replace(ctx, links=run_links(ctx)))
    return report.html, report.summary["links"]


def test_an_http_tracking_server_links_the_best_trial_run_and_the_parent_run(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.test:5000/")
    # The server's API is the sqlite store: the ids are read for real, and nothing leaves the machine.
    monkeypatch.setattr("pipeline.tracking.runs.client", lambda: tracking.MlflowClient(runs.uri))
    page, links = html_with(context(runs.trials))
    base = f"http://mlflow.test:5000/#/experiments/{runs.experiment}/runs"
    assert runs.experiment != "1" and f'<a href="{base}/{runs.trials[BEST]}">the best trial' in page
    assert f'<a href="{base}/{runs.parent}">the study' in page
    assert links == {
        "experiment_id": runs.experiment,
        "best_run_id": runs.trials[BEST],
        "best_run": f"{base}/{runs.trials[BEST]}",
        "parent_run_id": runs.parent,
        "parent_run": f"{base}/{runs.parent}",
    }
    assert BROWSE not in page


def test_a_local_store_without_a_ui_address_says_how_to_browse_and_links_no_run(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_asked(run_id: str) -> None:
        raise AssertionError("MLflow was asked for runs the page cannot link to")

    monkeypatch.setattr(tracking, "live_run_experiment", not_asked)
    page, links = html_with(context(runs.trials))
    assert "#/experiments/" not in page and 'href="http' not in page
    assert "<code>python -m pipeline ui</code>" in page and UI_URL_VAR in page
    assert set(links.values()) == {None}


def test_a_ui_address_links_the_runs_of_a_local_store(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UI_URL_VAR, "http://127.0.0.1:5000/")  # where `pipeline ui --port 5000` serves
    page, _ = html_with(context(runs.trials))
    base = f"http://127.0.0.1:5000/#/experiments/{runs.experiment}/runs"
    assert f'href="{base}/{runs.trials[BEST]}"' in page and f'href="{base}/{runs.parent}"' in page


def test_a_deleted_parent_run_is_not_linked_and_the_page_says_why(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UI_URL_VAR, "http://127.0.0.1:5000")
    runs.client.delete_run(runs.parent)
    links = run_links(context(runs.trials))
    assert links.best_run.endswith(f"/runs/{runs.trials[BEST]}") and links.parent_run == ""
    assert f"parent run {runs.parent} is not in MLflow" in links.note
    no_best = run_links(context([runs.trials[0], None, runs.trials[2]]))  # the best trial ran without tracking
    assert no_best.best_run == "" and "the best trial has no MLflow run id" in no_best.note


def test_the_ui_address() -> None:
    assert ui_base("sqlite:////tmp/mlflow.db", None) is None  # `pipeline ui` picks its port when it starts
    assert ui_base("https://user:secret@mlflow.example.com/team/", None) == "https://mlflow.example.com/team"
    assert ui_base("http://10.0.0.5:5000", "https://mlflow.example.com") == "https://mlflow.example.com"
    assert ui_base("sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    for wrong in ("127.0.0.1:5000", "file:///tmp/ui", "http://host:port"):
        with pytest.raises(ConfigError, match=UI_URL_VAR):
            ui_base("sqlite:////tmp/mlflow.db", wrong)
