"""The learning curve retrains with pipeline.nn.fit on nested, seeded subsets."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline import nn
from pipeline.report.curves import learning_curve


def data() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:200], y[:200], X[200:260], y[200:260]


def test_points_follow_the_fractions_and_are_reproducible() -> None:
    X, y, Xd, yd = data()
    arch = nn.Architecture.build(64, 10, (16,))
    hp = nn.FitOptions(learning_rate=0.01, epochs=15, batch_size=32)
    points, notes = learning_curve(X, y, Xd, yd, arch, hp, [1.0, 0.25, 0.25], seed=1)
    assert notes == [] and [(p.fraction, p.m) for p in points] == [(0.25, 50), (1.0, 200)]
    assert all(0 <= p.train_error <= 1 and 0 <= p.dev_error <= 1 for p in points)
    assert points[-1].dev_error < points[0].dev_error  # 4x the data helps on digits
    again, _ = learning_curve(X, y, Xd, yd, arch, hp, [0.25, 1.0], seed=1)
    assert again == points


def test_a_diverging_fraction_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.report.curves as curves

    def fit(X: np.ndarray, y: np.ndarray, arch: nn.Architecture, hp: nn.FitOptions, seed: int) -> nn.FitResult:
        if X.shape[1] < 100:  # the small subset diverges, the full one trains
            raise nn.Diverged(3, float("nan"))
        return nn.fit(X, y, arch, hp, seed=seed)

    monkeypatch.setattr(curves, "fit", fit)
    X, y, Xd, yd = data()
    arch = nn.Architecture.build(64, 10, (16,))
    points, notes = learning_curve(X, y, Xd, yd, arch, nn.FitOptions(epochs=2), [0.25, 1.0], seed=1)
    assert [p.m for p in points] == [200]
    assert notes == ["fraction 0.25 (m=50) skipped: cost became nan at epoch 3: lower the learning rate"]


def test_the_full_fraction_is_exactly_the_final_model() -> None:
    """With the best trial's stream, the curve's last point is the network the train stage ships."""
    from sklearn.datasets import load_digits

    from pipeline.nn import Architecture, FitOptions, error_rate, fit
    from pipeline.study.space import trial_seed

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, y_train, X_dev, y_dev = X[:400], y[:400], X[400:500], y[400:500]
    arch = Architecture.build(64, 10, (16,))
    hp = FitOptions(epochs=5, batch_size=32, learning_rate=0.01, keep_prob=0.8)
    points, _ = learning_curve(X_train, y_train, X_dev, y_dev, arch, hp, [0.5, 1.0], [7, 3])
    final = fit(X_train.T, y_train, arch, hp, X_dev=X_dev.T, y_dev=y_dev, seed=trial_seed(7, 3))
    assert points[-1].m == 400
    assert points[-1].train_error == error_rate(X_train.T, y_train, final.weights, arch)
    assert points[-1].dev_error == error_rate(X_dev.T, y_dev, final.weights, arch)
