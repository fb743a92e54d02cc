"""Learning curve: train and dev error of one configuration against the training-set size.

Each point retrains the network from scratch with ``pipeline.nn.fit`` on the first ``m`` examples
of one seeded permutation of the train split, so the subsets are nested and only the size varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.nn.network import Architecture, error_rate
from pipeline.nn.train import Diverged, FitOptions, fit


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
    seed: int | Sequence[int],
) -> tuple[list[CurvePoint], list[str]]:
    """Fit on growing fractions of the train rows ``(m, n_x)``; return the points and a note per skipped fraction.

    Every fit starts from a fresh generator of ``seed`` (e.g. the best trial's ``[seed, trial number]``),
    so the point at fraction 1 is exactly the final model.
    """
    m = len(y_train)
    order = np.random.default_rng(seed).permutation(m)
    X_dev_cols = np.asarray(X_dev).T
    points, notes = [], []
    for fraction in sorted(set(fractions)):
        k = max(1, round(fraction * m))
        idx = np.sort(order[:k])  # sorted: the memory-mapped rows are read in file order
        X, y = np.asarray(X_train[idx]).T, np.asarray(y_train[idx])
        try:
            result = fit(X, y, arch, hp, seed=np.random.default_rng(seed))
        except Diverged as e:
            notes.append(f"fraction {fraction:g} (m={k}) skipped: {e}")
            continue
        train_error = error_rate(X, y, result.weights, arch)
        dev_error = error_rate(X_dev_cols, y_dev, result.weights, arch)
        points.append(CurvePoint(fraction, k, float(train_error), float(dev_error)))
    return points, notes


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
