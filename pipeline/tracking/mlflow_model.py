"""The final network as an MLflow pyfunc model, defined from code (no pickle).

``pipeline.tracking.log_final_model`` logs this file as ``python_model`` with the weights (.npz),
the architecture (.json) and the normalizer as artifacts, and this package as code. MLflow runs
the file when the model loads; ``set_model`` names the object that serves predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from pipeline.data.normalize import Normalizer
from pipeline.nn import model_from_bytes, predict


class RawRowsClassifier(mlflow.pyfunc.PythonModel):
    """Raw flattened pixel rows (n, n_x) in, predicted integer labels (n,) out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        weights_file = Path(context.artifacts["weights"])
        # save_model's pair shares a stem, and MLflow copies both into one artifacts folder.
        meta_file = weights_file.with_suffix(".json")
        self.weights, self.arch, extra = model_from_bytes(
            weights_file.read_bytes(), meta_file.read_bytes(), weights_file.name, meta_file.name
        )
        if "normalizer" in context.artifacts:
            spec = json.loads(Path(context.artifacts["normalizer"]).read_text(encoding="utf-8"))
        else:
            spec = extra["normalizer"]
        self.normalizer = Normalizer.from_dict(spec)

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """Raw rows (n, n_x) as an array or DataFrame."""
        # np.ndarray is a hint MLflow accepts without deriving a schema; the logged input example
        # gives the schema.
        rows = np.atleast_2d(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input)
        if rows.ndim != 2 or rows.shape[1] != self.arch.layer_dims[0]:
            raise ValueError(f"expected rows of {self.arch.layer_dims[0]} raw pixel values, got shape {rows.shape}")
        X = self.normalizer.transform(rows).T  # the network takes examples as columns
        return predict(X, self.weights, self.arch)


mlflow.models.set_model(RawRowsClassifier())
