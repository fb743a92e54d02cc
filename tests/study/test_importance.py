"""Parameter importances: Optuna's PED-ANOVA, imported without scikit-learn, and fANOVA left working."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from pipeline.study.importance import param_importances

# A study where only x matters: its importance must dominate. Run in a fresh interpreter, because
# in this one another test may have imported scikit-learn already.
STUDY = """
import json, sys
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from pipeline.study.importance import param_importances
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2 + 1e-3 * t.suggest_float("y", 0, 1), n_trials=30)
ours = param_importances(study)
print(json.dumps({"ours": ours, "sklearn": "sklearn" in sys.modules,
                  "optuna": optuna.importance.get_param_importances(study)}))
"""


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importances_are_optunas_default_and_need_no_scikit_learn() -> None:
    out = _run(STUDY)
    assert out["sklearn"] is False
    assert out["ours"] == out["optuna"]  # the same evaluator Optuna uses by default
    assert out["ours"]["x"] > 0.9 and sum(out["ours"].values()) == pytest.approx(1.0)


@pytest.mark.slow  # imports scikit-learn in a fresh interpreter: 3 s
def test_fanova_still_works_in_a_process_that_computed_importances_first() -> None:
    code = STUDY.replace(
        "print(",
        "fanova = optuna.importance.get_param_importances(study, evaluator=optuna.importance."
        "FanovaImportanceEvaluator(seed=0))\nassert fanova['x'] > 0.9, fanova\nprint(",
    )
    assert _run(code)["ours"]["x"] > 0.9


def test_fewer_than_two_completed_trials_give_no_importances() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) / 0, n_trials=1, catch=(ZeroDivisionError,))
    assert param_importances(study) == {}  # Optuna would give x an importance from one trial
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert set(param_importances(study)) == {"x"}
