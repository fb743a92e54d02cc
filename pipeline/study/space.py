"""The search space: how a trial's parameter values become a configuration.

``apply_params`` is shared by the objective and the final train stage, so the network the study
scored and the network the pipeline ships are built by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import nn
from pipeline.config import ModelParams, Params, SpaceParams, TrainParams
from pipeline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import optuna

# Trial parameters that map one-to-one onto the train section.
TRAIN_KEYS = ("learning_rate", "l2_lambda", "keep_prob", "optimizer", "batch_size", "epochs")
MODEL_KEYS = ("n_layers", "n_units")


def apply_params(base: Params, values: Mapping[str, Any]) -> Params:
    """Return ``base`` with the model and train sections replaced by a trial's values."""
    unknown = sorted(set(values) - set(TRAIN_KEYS) - set(MODEL_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown trial parameter '{unknown[0]}'; expected some of {', '.join(TRAIN_KEYS + MODEL_KEYS)}"
        )
    model = base.model
    if "n_layers" in values or "n_units" in values:
        # model.hidden_layers is read only for a key the trial lacks: a study's networks do not depend on it
        n_layers = int(values["n_layers"] if "n_layers" in values else len(model.hidden_layers))
        n_units = int(values["n_units"] if "n_units" in values else (model.hidden_layers or (1,))[0])
        model = replace(model, hidden_layers=(n_units,) * n_layers)  # one width for every hidden layer
    train = replace(base.train, **{k: values[k] for k in TRAIN_KEYS if k in values})
    return replace(base, model=model, train=train)


def architecture(model: ModelParams, n_x: int, n_classes: int) -> nn.Architecture:
    """The network of the ``model:`` section for ``n_x`` features and ``n_classes`` classes: the one
    place params become an ``nn.Architecture`` (objective, train stage, report)."""
    try:
        return nn.Architecture.build(
            n_x, n_classes, model.hidden_layers, model.hidden_activation, model.init, model.dtype
        )
    except ValueError as e:
        raise ConfigError(f"model: cannot build the network ({e})") from None


def fit_options(train: TrainParams) -> nn.FitOptions:
    """The ``train:`` section as the numpy-only options ``nn.fit`` takes."""
    fields = {f: getattr(train, f) for f in nn.FitOptions.__dataclass_fields__}
    return nn.FitOptions(**fields)


def suggest(trial: optuna.Trial, space: SpaceParams, base: Params) -> dict[str, Any]:
    """Draw one configuration from ``space``; keys the space leaves fixed come from ``base``.

    The result holds all eight keys ``apply_params`` knows, so a trial's values (and the
    study's best_params.json) say exactly what was trained even if params.yaml changes later.
    Learning rate and L2 lambda are log-uniform; with ``allow_off`` a categorical ``l2`` switch
    ("on"/"off") comes first, because a log scale cannot reach 0.
    """
    values: dict[str, Any] = {
        "learning_rate": trial.suggest_float(
            "learning_rate", space.learning_rate.low, space.learning_rate.high, log=True
        ),
        "n_layers": trial.suggest_int("n_layers", space.n_layers.low, space.n_layers.high),
        "n_units": trial.suggest_int("n_units", space.n_units.low, space.n_units.high, log=True),
    }
    l2 = space.l2_lambda
    if l2.allow_off and trial.suggest_categorical("l2", ["on", "off"]) == "off":
        values["l2_lambda"] = 0.0
    else:
        values["l2_lambda"] = trial.suggest_float("l2_lambda", l2.low, l2.high, log=True)
    values["keep_prob"] = trial.suggest_float("keep_prob", space.keep_prob.low, space.keep_prob.high)
    train = base.train
    values["optimizer"] = (
        trial.suggest_categorical("optimizer", list(space.optimizer)) if space.optimizer else train.optimizer
    )
    values["batch_size"] = (
        trial.suggest_categorical("batch_size", list(space.batch_size)) if space.batch_size else train.batch_size
    )
    values["epochs"] = (
        trial.suggest_int("epochs", space.epochs.low, space.epochs.high) if space.epochs else train.epochs
    )
    return values


def searched_train_keys(space: SpaceParams) -> tuple[str, ...]:
    """The ``train.*`` keys a trial draws from ``space``; every other train key comes from params.yaml.

    Learning rate, L2 lambda and keep_prob are always searched; optimizer, batch size and epochs
    only when the space lists them (``suggest`` follows the same rule).
    """
    optional = {"optimizer": space.optimizer, "batch_size": space.batch_size, "epochs": space.epochs}
    return tuple(k for k in TRAIN_KEYS if k not in optional or optional[k])


def final_settings(params: Params, best: Mapping[str, Any] | None) -> tuple[Params, int | None]:
    """The final model's configuration and the trial whose random stream it trains with: the one rule
    the train stage and the report's retraining share.

    With ``train.use_study_best`` and the study's best_params.json (``best``): the best trial's
    values over params.yaml (searched keys from the trial, the rest from params.yaml) and its
    ``seed_trial`` (the trial number whose stream trained it; a retried trial keeps the original's).
    Otherwise params.yaml as it is and None (the stream of ``params.seed``).
    """
    if best is None or not params.train.use_study_best:
        return params, None
    values, number = best.get("params"), best.get("seed_trial", best.get("trial_number"))
    if not isinstance(values, Mapping):
        raise DataError("reports/study/best_params.json: expected an object with a 'params' mapping; rerun tune")
    if not isinstance(number, int) or isinstance(number, bool):
        raise DataError("reports/study/best_params.json: 'trial_number' must be an integer; rerun the tune stage")
    return apply_params(params, values), number


def trial_seed(seed: int, trial_number: int) -> np.random.Generator:
    """The random stream of one trial, from the study seed and the trial number.

    A retried trial trains exactly as the original, and the final train stage, given the best
    trial's parameters and number, trains exactly the network the study scored.
    """
    return np.random.default_rng([seed, trial_number])
