"""Reproducible, tracked and explained hyperparameter studies for NumPy deep networks."""

__version__ = "0.1.0"
