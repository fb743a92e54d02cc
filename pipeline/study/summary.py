"""What a sweep's parent run records about its study, as plain values for ``tracking.finish_study_run``."""

from __future__ import annotations

import optuna

from pipeline.study.importance import param_importances
from pipeline.tracking import StudySummary


def summarize(study: optuna.Study) -> StudySummary:
    """The trial counts per state, the best trial and the parameter importances of ``study``."""
    counts = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    importances = param_importances(study)
    try:
        best = study.best_trial
    except (ValueError, RuntimeError):  # no finished trial (or a multi-objective study)
        return StudySummary(counts, importances=importances)
    return StudySummary(
        counts,
        best_params=dict(best.params),
        best_value=best.value,
        best_trial_number=best.number,
        # None where the run waited in the outbox when the trial started (a server that was away)
        best_run_id=best.user_attrs.get("mlflow_run_id") or "",
        importances=importances,
    )
