"""The NumPy network core. Imports numpy and the standard library only: no search, tracking,
params files or file system (a model becomes bytes; ``pipeline.data.store`` writes them)."""

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
from pipeline.nn.serialize import ModelFileError, model_from_bytes, model_to_bytes
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
    "model_from_bytes",
    "model_to_bytes",
    "predict",
    "predict_proba",
]
