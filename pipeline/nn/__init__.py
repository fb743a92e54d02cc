"""The NumPy network core. Imports numpy only: no search, tracking, pipeline or file formats
beyond its own pickle-free save/load."""

from pipeline.nn.gradcheck import check_weights, gradient_check
from pipeline.nn.health import LayerHealth
from pipeline.nn.network import (
    Architecture,
    Weights,
    backward,
    compute_cost,
    encode_labels,
    error_rate,
    forward,
    initialize,
    predict,
    predict_proba,
)
from pipeline.nn.serialize import ModelFileError, load_model, save_model
from pipeline.nn.train import Callback, Diverged, EpochLog, FitOptions, FitResult, fit

__all__ = [
    "Architecture",
    "Callback",
    "Diverged",
    "EpochLog",
    "FitOptions",
    "FitResult",
    "LayerHealth",
    "ModelFileError",
    "Weights",
    "backward",
    "check_weights",
    "compute_cost",
    "encode_labels",
    "error_rate",
    "fit",
    "forward",
    "gradient_check",
    "initialize",
    "load_model",
    "predict",
    "predict_proba",
    "save_model",
]
