"""A scikit-learn classifier around the NumPy core, so that ``clone``, ``cross_val_score`` and
``learning_curve`` accept it. Rows are examples here, as scikit-learn expects."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline.nn import Architecture, FitOptions, fit, predict, predict_proba


class NumpyMLPClassifier(ClassifierMixin, BaseEstimator):
    """L-layer network classifier; parameters mirror params.yaml's ``model`` and ``train`` sections."""

    def __init__(
        self,
        hidden_layers: tuple[int, ...] = (64, 32),
        hidden_activation: str = "relu",
        init: str = "he",
        dtype: str = "float64",
        learning_rate: float = 0.001,
        epochs: int = 60,
        batch_size: int = 64,
        optimizer: str = "adam",
        l2_lambda: float = 0.0,
        keep_prob: float = 1.0,
        lr_decay: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.hidden_layers = hidden_layers
        self.hidden_activation = hidden_activation
        self.init = init
        self.dtype = dtype
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.l2_lambda = l2_lambda
        self.keep_prob = keep_prob
        self.lr_decay = lr_decay
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> NumpyMLPClassifier:
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)  # a continuous target: scikit-learn's "Unknown label type" error
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        if len(self.classes_) < 2:  # scikit-learn's wording (LogisticRegression, LinearSVC)
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but the data contains only one"
                f" class: {self.classes_.tolist()[0]!r}"
            )
        self.architecture_ = Architecture.build(
            X.shape[1], len(self.classes_), tuple(self.hidden_layers), self.hidden_activation, self.init, self.dtype
        )
        hp = FitOptions(
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            l2_lambda=self.l2_lambda,
            keep_prob=self.keep_prob,
            lr_decay=self.lr_decay,
        )
        result = fit(X.T, self.label_encoder_.transform(y), self.architecture_, hp, seed=self.random_state)
        self.weights_, self.history_ = result.weights, result.history
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        P = predict_proba(X.T, self.weights_, self.architecture_)
        if self.architecture_.output == "sigmoid":
            P = np.vstack([1 - P, P])
        return P.T

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.classes_[predict(X.T, self.weights_, self.architecture_)]
