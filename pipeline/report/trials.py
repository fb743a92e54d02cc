"""The study's trials as the tune stage exported them (``reports/study/trials.csv``).

Two layouts are read: optuna's ``study.trials_dataframe()`` (``number, value, state, duration,
params_<name>, user_attrs_<name>``) and the tune stage's own (``number, state, value, duration_s``,
then unprefixed parameter and user-attribute columns; parameters are the names
``pipeline.study.space`` knows). Importances are computed on an in-memory study rebuilt from it,
so the report needs neither the study storage (which may be a PostgreSQL server) nor a lock on its
SQLite file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import DataError
from pipeline.study.space import MODEL_KEYS, TRAIN_KEYS

MIN_TRIALS_FOR_IMPORTANCE = 4
PARAM_NAMES = (*TRAIN_KEYS, *MODEL_KEYS, "l2")  # "l2": the on/off switch drawn before l2_lambda
META = ("number", "state", "value", "duration", "duration_s", "datetime_start", "datetime_complete")


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    params: dict[str, Any]
    train_error: float | None = None
    dev_error: float | None = None
    run_id: str | None = None  # the trial's MLflow run
    seconds: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def _clean(x: Any) -> Any:
    """NaN (pandas' empty cell) -> None; NumPy scalars -> Python."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def read_trials(path: Path) -> list[TrialRow]:
    """Parse the trials CSV; a CSV without ``number``/``state`` columns is a DataError."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e}); rerun the tune stage") from None
    missing = {"number", "state"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column '{sorted(missing)[0]}'; rerun the tune stage")
    if "duration_s" in df:
        seconds = pd.to_numeric(df["duration_s"], errors="coerce")
    elif "duration" in df:
        seconds = pd.to_timedelta(df["duration"], errors="coerce").dt.total_seconds()
    else:
        seconds = None
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        params, attrs = {}, {}
        for col, cell in rec.items():
            value = _clean(cell)
            if col in META or col.startswith("system_attrs_"):
                continue
            if col.startswith("params_") or col in PARAM_NAMES:
                if value is not None:
                    params[col.removeprefix("params_")] = value
            else:
                attrs[col.removeprefix("user_attrs_")] = value
        rows.append(
            TrialRow(
                number=int(rec["number"]),
                state=str(rec["state"]).split(".")[-1],  # "TrialState.COMPLETE" or "COMPLETE"
                value=_clean(rec.get("value")),
                params=params,
                train_error=attrs.get("train_error"),
                dev_error=attrs.get("dev_error"),
                run_id=attrs.get("mlflow_run_id"),
                seconds=_clean(seconds.iloc[i]) if seconds is not None else None,
                attrs=attrs,
            )
        )
    return rows


def complete(rows: list[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r.state == "COMPLETE" and r.value is not None]


def importances(rows: list[TrialRow], seed: int) -> tuple[dict[str, float] | None, str]:
    """Optuna's parameter importances over the finished trials, or None and the reason."""
    done = complete(rows)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"only {len(done)} finished trial(s); importances need at least {MIN_TRIALS_FOR_IMPORTANCE}"
    import optuna  # only here: the rest of the report does not need it

    names = sorted({k for r in done for k in r.params})
    dists: dict[str, Any] = {}
    for name in names:
        values = [r.params[name] for r in done if name in r.params]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            lo, hi = min(values), max(values)
            if lo == hi:
                continue  # a constant parameter explains nothing
            if all(float(v).is_integer() for v in values):
                dists[name] = optuna.distributions.IntDistribution(int(lo), int(hi))
            else:
                # The observed range is enough for importance; the search range may include an 'off' 0.0.
                dists[name] = optuna.distributions.FloatDistribution(float(lo), float(hi), log=lo > 0 and hi / lo > 100)
        elif len(set(map(str, values))) > 1:
            dists[name] = optuna.distributions.CategoricalDistribution(sorted(set(map(str, values))))
    if not dists:
        return None, "no parameter varied across the finished trials"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line from library code
    try:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    for r in done:
        p = {
            k: (str(v) if isinstance(dists[k], optuna.distributions.CategoricalDistribution) else v)
            for k, v in r.params.items()
            if k in dists
        }
        p = {k: int(v) if isinstance(dists[k], optuna.distributions.IntDistribution) else v for k, v in p.items()}
        study.add_trial(optuna.trial.create_trial(params=p, distributions={k: dists[k] for k in p}, value=r.value))
    try:
        result = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return None, f"optuna could not compute importances ({e})"
    result = {k: float(v) for k, v in result.items() if math.isfinite(v)}
    return (result, "") if result else (None, "optuna returned no finite importance")
