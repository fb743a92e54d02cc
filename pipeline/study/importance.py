"""Parameter importances of a study: Optuna's default evaluator (PED-ANOVA), without scikit-learn.

``import optuna.importance`` also imports scikit-learn's ensemble module, for the fANOVA evaluator
that the pipeline does not use: 3.5 s of every sweep's end and of every report stage, where the
PED-ANOVA evaluation itself takes milliseconds (docs/benchmarks-sweep.md). So the package is
imported here with scikit-learn hidden: Optuna guards that import with ``try_import``, which then
records it as missing. Afterwards the guard is replaced by one that imports scikit-learn when
fANOVA is first used, so other code in the same process still gets a working
``FanovaImportanceEvaluator`` (tests/study/test_importance.py checks both).
"""

from __future__ import annotations

import sys
from types import ModuleType

import optuna
from optuna.trial import TrialState

_FANOVA = "optuna.importance._fanova._fanova"


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Normalized PED-ANOVA importances of the study's completed trials; empty when they cannot rank.

    Fewer than two completed trials give Optuna's warning and equal (meaningless) importances, and
    Optuna raises ValueError or RuntimeError for some degenerate studies: both are
    empty here.
    """
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    importance = _optuna_importance()
    try:
        return {k: float(v) for k, v in importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # nothing varied; a degenerate density
        return {}


def _optuna_importance() -> ModuleType:
    if "optuna.importance" in sys.modules or "sklearn.ensemble" in sys.modules:
        import optuna.importance  # already paid for, or nothing to save

        return optuna.importance
    # Not thread-safe, and need not be: the launcher's end and the report stage import it from their
    # main thread, with no other thread importing scikit-learn meanwhile.
    hidden = [name for name in ("sklearn", "sklearn.ensemble") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import sklearn` raise ImportError
    try:
        import optuna.importance
    finally:
        for name in hidden:
            del sys.modules[name]
    guard = getattr(sys.modules.get(_FANOVA), "_imports", None)  # None: Optuna moved it; nothing to mend
    if guard is not None and not guard.is_successful():
        sys.modules[_FANOVA]._imports = _ImportOnCheck(sys.modules[_FANOVA])  # type: ignore[attr-defined]
    return optuna.importance


class _ImportOnCheck:
    """Optuna's import guard for fANOVA, deferred: ``check()`` imports scikit-learn's forest then."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def is_successful(self) -> bool:
        try:
            self.check()
        except ImportError:
            return False
        return True

    def check(self) -> None:
        from sklearn.ensemble import RandomForestRegressor  # raises ImportError where it is missing

        self._module.RandomForestRegressor = RandomForestRegressor  # type: ignore[attr-defined]
