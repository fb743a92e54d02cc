"""Learning curve: train and dev error of one configuration against the training-set size.

Each point retrains the network from scratch with ``pipeline.nn.fit`` on the first ``m`` examples
of one seeded permutation of the train split, so the subsets are nested and only the size varies.
``final_model_curve`` does it for the final model's configuration and random stream (the train
stage's rule), so the point at fraction 1 is exactly the shipped network. It is the report's only
training; the report stage calls it and hands the points to the sections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import Params
from pipeline.data.store import load_split
from pipeline.nn.network import Architecture, error_rate
from pipeline.nn.train import Diverged, FitOptions, fit
from pipeline.paths import NORMALIZER
from pipeline.report.inputs import ReportInputs
from pipeline.study.space import architecture, fit_options, trial_seed
from pipeline.study.space import final_settings as space_final_settings
from pipeline.threads import choose_blas_threads, limit_blas_threads

Stream = Callable[[], np.random.Generator]  # a fresh generator of the same random stream per call


@dataclass(frozen=True)
class CurvePoint:
    fraction: float
    m: int
    train_error: float
    dev_error: float


def learning_curve(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_dev: np.ndarray,
    y_dev: np.ndarray,
    arch: Architecture,
    hp: FitOptions,
    fractions: Sequence[float],
    stream: Stream,
) -> tuple[list[CurvePoint], list[str]]:
    """Fit on growing fractions of the train rows ``(m, n_x)``; return the points and a note per skipped fraction.

    The subsets come from one permutation drawn from ``stream()``, and every fit starts from a fresh
    ``stream()`` (e.g. ``lambda: trial_seed(seed, number)``), so the point at fraction 1 is exactly
    the network ``fit`` gives on the whole train split with that stream.
    """
    m = len(y_train)
    order = stream().permutation(m)
    X_dev_cols = np.asarray(X_dev).T
    points, notes = [], []
    for fraction in sorted(set(fractions)):
        k = max(1, round(fraction * m))
        if k == m:  # all of train: the file itself (X.T of its map), as the train stage fits it, no copy
            X, y = np.asarray(X_train).T, np.asarray(y_train)
        else:
            idx = np.sort(order[:k])  # sorted: the memory-mapped rows are read in file order
            X, y = np.asarray(X_train[idx]).T, np.asarray(y_train[idx])
        try:
            result = fit(X, y, arch, hp, seed=stream())
        except Diverged as e:
            notes.append(f"fraction {fraction:g} (m={k}) skipped: {e}")
            continue
        train_error = error_rate(X, y, result.weights, arch)
        dev_error = error_rate(X_dev_cols, y_dev, result.weights, arch)
        points.append(CurvePoint(fraction, k, float(train_error), float(dev_error)))
    return points, notes


def final_settings(params: Params, best: Mapping[str, Any] | None) -> tuple[Params, Stream]:
    """The final model's configuration and random stream, by the train stage's rule
    (``pipeline.study.space.final_settings``): the stream is a function giving a fresh generator."""
    config, number = space_final_settings(params, best)
    if number is None:
        return config, lambda: np.random.default_rng(params.seed)
    return config, lambda: trial_seed(params.seed, number)


def final_model_curve(inputs: ReportInputs, params: Params) -> tuple[list[CurvePoint], list[str]]:
    """Retrain the final model's configuration on ``report.learning_curve_fractions`` of the train split.

    Returns the points and notes (why no curve, or which fractions were skipped). Threads are limited
    as the train stage limits them, so the full-size point reproduces the shipped network.
    """
    if "train" not in inputs.sizes or "dev" not in inputs.sizes:
        return [], [f"needs the train and dev splits: {inputs.why_missing('data') or 'dev split missing'}"]
    fractions = params.report.learning_curve_fractions
    if not fractions:
        return [], ["report.learning_curve_fractions is empty"]
    classes = (inputs.meta or {}).get("classes")
    if not classes:
        return [], [
            f"{NORMALIZER.as_posix()} lists no classes: {inputs.why_missing('meta') or 'rerun dvc repro split'}"
        ]
    config, stream = final_settings(params, inputs.best)
    X, y = load_split("train", inputs.root)
    X_dev, y_dev = load_split("dev", inputs.root)
    arch = architecture(config.model, X.shape[1], len(classes))  # the train stage's class count
    hp = fit_options(config.train)
    threads = choose_blas_threads(config.train.blas_threads, arch.layer_dims, hp.batch_size, m=len(y))
    with limit_blas_threads(threads):
        return learning_curve(X, y, X_dev, y_dev, arch, hp, fractions, stream)


def read_curve(points: Sequence[CurvePoint], human_error: float, tolerance: float, dev_half_width: float = 0.0) -> str:
    """What the curve says about more data, in one or two sentences.

    A gap or a fall counts only when it exceeds the tolerance and the dev interval's half-width:
    on a tiny dev set, a few examples' difference says nothing.
    """
    if len(points) < 2:
        return (
            "A learning curve needs at least two training-set sizes; add fractions to report.learning_curve_fractions."
        )
    first, prev, last = points[0], points[-2], points[-1]
    gap = last.dev_error - last.train_error
    noise = max(tolerance, dev_half_width)
    still_falling = prev.dev_error - last.dev_error > noise / 2
    text = (
        f"From m={first.m} to m={last.m}, dev error went {100 * first.dev_error:.1f}% -> {100 * last.dev_error:.1f}% "
        f"and train error {100 * first.train_error:.1f}% -> {100 * last.train_error:.1f}%; "
        f"the gap at full size is {100 * gap:.1f} points. "
    )
    if still_falling and gap > noise:
        return text + "Dev error is still falling and the gap is open: more data of this kind should help (variance)."
    if still_falling:
        return text + "Dev error is still falling at full size: more data may still help a little."
    if last.train_error - human_error > tolerance and gap <= noise:
        return text + "Both curves have flattened at a high error: more data will not help; reduce bias first."
    if gap > noise:
        return text + (
            "Dev error has flattened while the gap stays open: more data of the same kind helps little; "
            "regularize instead (or the small dev set hides the trend)."
        )
    if gap > tolerance:
        return text + "The gap is within the dev set's noise: the curve cannot say whether more data helps."
    return text + "The curves have met near the target: more data would change little."
