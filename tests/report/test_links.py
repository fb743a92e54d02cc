"""The report's links to the MLflow UI: MLflow 3's run-page address, and no link without every part of it."""

from __future__ import annotations

from dataclasses import replace

from pipeline.report.links import BROWSE, RunLinks, run_url, runs_line


def test_the_run_page_address_is_mlflow_3s() -> None:
    assert run_url("http://127.0.0.1:5000", "7", "ab12") == "http://127.0.0.1:5000/#/experiments/7/runs/ab12"


def test_a_link_needs_the_ui_the_experiment_and_the_run() -> None:
    full = RunLinks(ui="http://h:5000", experiment_id="7", best_run_id="b1", parent_run_id="p1")
    assert full.best_run.endswith("/experiments/7/runs/b1") and full.parent_run.endswith("/experiments/7/runs/p1")
    assert replace(full, ui="").best_run == "" and replace(full, experiment_id="").parent_run == ""
    assert RunLinks(ui="http://h:5000", experiment_id="7").to_dict() == {
        "experiment_id": "7",
        "best_run_id": None,
        "best_run": None,
        "parent_run_id": None,
        "parent_run": None,
    }


def test_the_runs_line_links_what_is_known_and_says_why_the_rest_is_not() -> None:
    both = runs_line(RunLinks(ui="http://h", experiment_id="7", best_run_id="b1", parent_run_id="p1"), 4)
    assert "[the best trial's run](http://h/#/experiments/7/runs/b1) (trial 4)" in both
    assert "[the study's parent run](http://h/#/experiments/7/runs/p1)" in both and BROWSE not in both
    best_only = runs_line(RunLinks(ui="http://h", experiment_id="7", best_run_id="b1", note="parent run p1 is gone"), 4)
    assert "/runs/b1" in best_only and "parent run](" not in best_only and best_only.endswith("Parent run p1 is gone.")
    none = runs_line(RunLinks(note="no MLflow UI address is known"), 4)
    assert none.startswith(BROWSE) and "](" not in none and none.endswith("No MLflow UI address is known.")
