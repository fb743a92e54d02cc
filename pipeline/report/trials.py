"""The study's trials as the tune stage exported them (``reports/study/trials.csv``).

Two layouts are read: optuna's ``study.trials_dataframe()`` (``number, value, state, duration,
params_<name>, user_attrs_<name>``) and the tune stage's own (``number, state, value, duration_s``,
then unprefixed parameter and user-attribute columns; parameters are the names
``pipeline.study.space`` knows). Importances are computed on an in-memory study rebuilt from it,
so the report needs neither the study storage (which may be a PostgreSQL server) nor a lock on its
SQLite file. The ``l2`` on/off switch is folded into ``l2_lambda`` (off = 0.0), so each parameter
appears once. ``effort`` sums the epochs and seconds per trial state and what pruning saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError
from pipeline.study.space import MODEL_KEYS, TRAIN_KEYS

MIN_TRIALS_FOR_IMPORTANCE = 4
MIN_DISTINCT_SCORES = 5  # fewer distinct dev errors than this cannot rank parameters
INT_KEYS = ("n_layers", "n_units", "batch_size", "epochs")
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
    import pandas as pd  # here, not at the top: a second to import, and only this reader needs it

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


def merged_params(row: TrialRow) -> dict[str, Any]:
    """The trial's parameters with the ``l2`` switch folded into ``l2_lambda`` (off = 0.0)."""
    params = {k: v for k, v in row.params.items() if k != "l2"}
    if row.params.get("l2") == "off":
        params["l2_lambda"] = 0.0
    return params


def trial_values(row: TrialRow) -> dict[str, Any]:
    """The values ``pipeline.study.space.apply_params`` takes, from a trial's row."""
    keys = (*TRAIN_KEYS, *MODEL_KEYS)
    values = {k: v for k, v in merged_params(row).items() if k in keys}
    return {k: int(v) if k in INT_KEYS else v for k, v in values.items()}


def importances(rows: list[TrialRow], seed: int) -> tuple[dict[str, float] | None, str]:
    """Optuna's parameter importances over the finished trials, or None and the reason."""
    done = complete(rows)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"only {len(done)} finished trial(s); importances need at least {MIN_TRIALS_FOR_IMPORTANCE}"
    distinct = len({round(float(r.value), 12) for r in done})
    if distinct < MIN_DISTINCT_SCORES:
        return None, (
            f"the {len(done)} finished trials have only {distinct} distinct dev errors (at least "
            f"{MIN_DISTINCT_SCORES} are needed): a parameter's effect cannot be told from the dev set's steps"
        )
    import optuna  # only here: the rest of the report does not need it

    from pipeline.study.importance import param_importances

    done = [TrialRow(r.number, r.state, r.value, merged_params(r)) for r in done]
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
    result = {k: v for k, v in param_importances(study).items() if math.isfinite(v)}
    return (result, "") if result else (None, "optuna returned no finite importance")


@dataclass(frozen=True)
class Effort:
    """Epochs and seconds spent per trial state, and what pruning saved against training every trial to the end."""

    per_state: dict[str, dict[str, float]]  # state -> trials, epochs, seconds, seconds_per_epoch
    saved_epochs: int  # the pruned trials' missing epochs
    saved_seconds: float  # saved_epochs x the mean seconds per epoch over all trials
    seconds_per_epoch: float | None

    @property
    def spent_seconds(self) -> float:
        return sum(s["seconds"] for s in self.per_state.values())

    def metrics(self) -> dict[str, float]:
        """The numbers logged to the study's parent run."""
        out = {"pruning_saved_epochs": float(self.saved_epochs), "pruning_saved_s": self.saved_seconds}
        for state, s in self.per_state.items():
            out[f"trials_{state.lower()}_epochs"] = s["epochs"]
            out[f"trials_{state.lower()}_s"] = s["seconds"]
        return out


def effort(rows: list[TrialRow], default_epochs: int) -> Effort | None:
    """From trials.csv's ``epochs_trained`` and ``duration_s``; None when the file records neither.

    A trial's full length is its ``epochs`` parameter when the study searched it, else ``default_epochs``
    (``train.epochs``)."""
    if not any(r.attrs.get("epochs_trained") is not None or r.seconds is not None for r in rows):
        return None
    per_state: dict[str, dict[str, float]] = {}
    for r in rows:
        s = per_state.setdefault(r.state, {"trials": 0, "epochs": 0, "seconds": 0.0})
        s["trials"] += 1
        s["epochs"] += int(r.attrs.get("epochs_trained") or 0)
        s["seconds"] += float(r.seconds or 0.0)
    for s in per_state.values():
        s["seconds_per_epoch"] = s["seconds"] / s["epochs"] if s["epochs"] else None
    epochs, seconds = (sum(s[k] for s in per_state.values()) for k in ("epochs", "seconds"))
    per_epoch = seconds / epochs if epochs else None
    saved = sum(
        max(0, int(r.params.get("epochs", default_epochs)) - int(r.attrs.get("epochs_trained") or 0))
        for r in rows
        if r.state == "PRUNED"
    )
    return Effort(per_state, saved, saved * per_epoch if per_epoch else 0.0, per_epoch)
