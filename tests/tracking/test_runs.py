"""Existing runs: their status and experiment, and the parent runs a dead launcher left RUNNING."""

from __future__ import annotations

from tests.lazy import lazy

tracking = lazy("pipeline.tracking")  # mlflow loads when a test first uses it


def test_run_status_is_none_for_a_missing_or_deleted_run(store) -> None:
    parent = tracking.prepare_study_run("digits", None, {})
    assert tracking.run_status(parent) == "RUNNING"
    with tracking.TrialRun(parent, "digits", 0, {}) as run:
        pass
    assert tracking.run_status(run.run_id) == "FINISHED"
    tracking.finish_study_run(parent, tracking.StudySummary({"complete": 0}), "KILLED")
    assert tracking.run_status(parent) == "KILLED"
    assert tracking.run_status("0" * 32) is None
    store.delete_run(run.run_id)
    assert tracking.run_status(run.run_id) is None


def test_a_live_runs_experiment_is_its_studys_and_a_gone_run_has_none(store) -> None:
    store.create_experiment("other")  # the study's experiment is not the first one made
    parent = tracking.prepare_study_run("digits", None, {})
    with tracking.TrialRun(parent, "digits", 0, {}) as run:
        pass
    digits = store.get_experiment_by_name("digits").experiment_id
    assert tracking.live_run_experiment(parent) == tracking.live_run_experiment(run.run_id) == digits
    assert digits != store.get_experiment_by_name("other").experiment_id
    assert tracking.live_run_experiment("0" * 32) is None
    store.delete_run(run.run_id)  # no page to link to
    assert tracking.live_run_experiment(run.run_id) is None


def test_close_dead_parent_runs_ends_other_running_sweeps_of_the_experiment(store) -> None:
    dead = [tracking.prepare_study_run("digits", "shared", {}) for _ in range(2)]
    keep = tracking.prepare_study_run("digits", "shared", {})
    finished = tracking.prepare_study_run("digits", "shared", {})
    tracking.finish_study_run(finished, tracking.StudySummary({"complete": 0}))
    elsewhere = tracking.prepare_study_run("digits", "other", {})
    trial = tracking.TrialRun(dead[0], "digits", 0, {})  # a RUNNING child: mark_orphans ends those
    exp_id = store.get_run(keep).info.experiment_id
    final_model = store.create_run(exp_id, run_name="final-model").info.run_id  # not a sweep's parent run

    assert tracking.close_dead_parent_runs("shared", keep) == 2
    for run_id in dead:
        run = store.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["sweep.closed_by"] == keep
    assert tracking.run_status(keep) == "RUNNING"
    assert tracking.run_status(finished) == "FINISHED"
    assert tracking.run_status(elsewhere) == "RUNNING"
    assert tracking.run_status(trial.run_id) == "RUNNING"
    assert tracking.run_status(final_model) == "RUNNING"
    assert tracking.close_dead_parent_runs("shared", keep) == 0  # nothing left to close

    assert tracking.close_dead_parent_runs("other", None) == 1
    assert tracking.run_status(elsewhere) == "KILLED"
    assert tracking.close_dead_parent_runs("no such experiment", None) == 0
