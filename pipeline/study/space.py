"""The search space: how a trial's parameter values become a configuration.

``apply_params`` is shared by the objective and the final train stage, so the network the study
scored and the network the pipeline ships are built by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipeline.config import Params
from pipeline.errors import ConfigError

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
        n_layers = int(values.get("n_layers", len(model.hidden_layers)))
        n_units = int(values.get("n_units", model.hidden_layers[0] if model.hidden_layers else 1))
        model = replace(model, hidden_layers=(n_units,) * n_layers)  # one width for every hidden layer
    train = replace(base.train, **{k: values[k] for k in TRAIN_KEYS if k in values})
    return replace(base, model=model, train=train)
