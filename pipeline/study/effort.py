"""What a study spent, per trial state, and what pruning saved: plain numbers for the parent run and the report.

Per state (complete, pruned, failed): the epochs trained (the trial's ``epochs_trained`` user
attribute, else the epochs it reported) and its seconds (start to end). Saved by pruning, for
each trial the pruner stopped: the epochs it did not train (its full epochs minus those trained)
and those epochs at that trial's own mean seconds per epoch. A diverged trial is PRUNED too (its
``cause`` starts with "diverged"), but it could never have trained to the end: it counts among
the pruned trials' spending and not in what pruning saved. Running and waiting trials count
nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


def epochs_trained(trial: FrozenTrial) -> int:
    value = trial.user_attrs.get("epochs_trained")
    return int(value) if value is not None else len(trial.intermediate_values)


def seconds(trial: FrozenTrial) -> float:
    return trial.duration.total_seconds() if trial.duration is not None else 0.0


def full_epochs(trial: FrozenTrial, default: int) -> int:
    """The epochs the trial was set to train: its configuration's ``epochs``, else ``default``."""
    values = trial.user_attrs.get("values") or trial.params
    return int(values.get("epochs", default))


def diverged(trial: FrozenTrial) -> bool:
    return str(trial.user_attrs.get("cause", "")).startswith("diverged")


def study_effort(trials: Sequence[FrozenTrial], default_epochs: int) -> dict[str, float]:
    """``epochs_<state>``, ``seconds_<state>``, ``epochs_saved_by_pruning``, ``seconds_saved_by_pruning``."""
    out: dict[str, float] = {}
    for name in STATES.values():
        out[f"epochs_{name}"], out[f"seconds_{name}"] = 0.0, 0.0
    saved_epochs = saved_seconds = 0.0
    for t in trials:
        name = STATES.get(t.state)
        if name is None:
            continue
        done, spent = epochs_trained(t), seconds(t)
        out[f"epochs_{name}"] += done
        out[f"seconds_{name}"] += spent
        if t.state == TrialState.PRUNED and not diverged(t) and done > 0:
            missing = max(full_epochs(t, default_epochs) - done, 0)
            saved_epochs += missing
            saved_seconds += missing * spent / done
    out["epochs_saved_by_pruning"], out["seconds_saved_by_pruning"] = saved_epochs, saved_seconds
    return out
