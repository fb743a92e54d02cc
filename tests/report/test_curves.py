"""The learning curve retrains with pipeline.nn.fit on nested, seeded subsets."""

from functools import partial

import numpy as np
import pytest

from pipeline import nn
from pipeline.data.sources import digits_arrays
from pipeline.report.curves import learning_curve


def data() -> tuple[np.ndarray, ...]:
    X, y = digits_arrays()
    X = (X / 16.0).astype(np.float32)
    return X[:200], y[:200], X[200:260], y[200:260]


def test_points_follow_the_fractions_and_are_reproducible() -> None:
    X, y, Xd, yd = data()
    arch = nn.Architecture.build(64, 10, (16,))
    hp = nn.FitOptions(learning_rate=0.01, epochs=15, batch_size=32)
    stream = partial(np.random.default_rng, 1)
    points, notes = learning_curve(X, y, Xd, yd, arch, hp, [1.0, 0.25, 0.25], stream)
    assert notes == [] and [(p.fraction, p.m) for p in points] == [(0.25, 50), (1.0, 200)]
    assert all(0 <= p.train_error <= 1 and 0 <= p.dev_error <= 1 for p in points)
    assert points[-1].dev_error < points[0].dev_error  # 4x the data helps on digits
    again, _ = learning_curve(X, y, Xd, yd, arch, hp, [0.25, 1.0], stream)
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
    stream = partial(np.random.default_rng, 1)
    points, notes = learning_curve(X, y, Xd, yd, arch, nn.FitOptions(epochs=2), [0.25, 1.0], stream)
    assert [p.m for p in points] == [200]
    assert notes == ["fraction 0.25 (m=50) skipped: cost became nan at epoch 3: lower the learning rate"]


def test_the_full_fraction_is_exactly_the_final_model() -> None:
    """With the best trial's stream, the curve's last point is the network the train stage ships."""
    from pipeline.nn import Architecture, FitOptions, error_rate, fit
    from pipeline.study.space import trial_seed

    X, y = digits_arrays()
    X = (X / 16.0).astype(np.float32)
    X_train, y_train, X_dev, y_dev = X[:400], y[:400], X[400:500], y[400:500]
    arch = Architecture.build(64, 10, (16,))
    hp = FitOptions(epochs=5, batch_size=32, learning_rate=0.01, keep_prob=0.8)
    points, _ = learning_curve(X_train, y_train, X_dev, y_dev, arch, hp, [0.5, 1.0], lambda: trial_seed(7, 3))
    final = fit(X_train.T, y_train, arch, hp, X_dev=X_dev.T, y_dev=y_dev, seed=trial_seed(7, 3))
    assert points[-1].m == 400
    assert points[-1].train_error == error_rate(X_train.T, y_train, final.weights, arch)
    assert points[-1].dev_error == error_rate(X_dev.T, y_dev, final.weights, arch)


def test_final_settings_follow_the_train_stage() -> None:
    """The best trial's values over params.yaml, and the stream of seed_trial (else the trial's own number)."""
    from pipeline.config import params_from_dict
    from pipeline.report.curves import final_settings
    from pipeline.study.space import trial_seed

    params = params_from_dict({"seed": 7})
    best = {"trial_number": 3, "params": {"n_layers": 2, "n_units": 9, "epochs": 4}}
    config, stream = final_settings(params, best)
    assert config.model.hidden_layers == (9, 9) and config.train.epochs == 4
    assert stream().random() == trial_seed(7, 3).random() == stream().random()  # fresh each call
    _, stream = final_settings(params, {**best, "seed_trial": 1})
    assert stream().random() == trial_seed(7, 1).random()
    config, stream = final_settings(params_from_dict({"seed": 7, "train": {"use_study_best": False}}), best)
    assert config.model.hidden_layers == (64, 32) and stream().random() == np.random.default_rng(7).random()
    assert final_settings(params, None)[0] is params


def test_final_settings_reject_a_malformed_best_params() -> None:
    from pipeline.config import Params
    from pipeline.errors import DataError
    from pipeline.report.curves import final_settings

    with pytest.raises(DataError, match="trial_number"):
        final_settings(Params(), {"trial_number": "2", "params": {}})
    with pytest.raises(DataError, match="'params' mapping"):
        final_settings(Params(), {"trial_number": 2})


def test_the_full_size_point_trains_on_the_file_itself(tmp_path) -> None:
    """Fraction 1 reads the memory-mapped train rows as the train stage does: no copy of them."""
    import tracemalloc

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((20_000, 784), dtype=np.float32))  # 63 MB
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = rng.integers(0, 10, 20_000)
    arch = nn.Architecture.build(784, 10, (8,), dtype="float32")
    hp = nn.FitOptions(learning_rate=0.01, epochs=1, batch_size=256)
    tracemalloc.start()
    try:
        points, _ = learning_curve(X, y, X[:100], y[:100], arch, hp, [1.0], partial(np.random.default_rng, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert points[0].m == 20_000 and peak < X.nbytes / 4, f"peak {peak / 1e6:.1f} MB for {X.nbytes / 1e6:.0f} MB"
