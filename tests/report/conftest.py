"""A tiny real project for the report: a digits subset, a 4-trial Optuna study trained with
``pipeline.nn.fit``, a final model, and every file the upstream stages write (their formats),
including the trials' dev predictions and the final model's gradient health."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from pipeline import nn
from pipeline.config import Params, params_from_dict
from pipeline.data.models import save_model
from pipeline.data.sources import digits_arrays
from pipeline.report import figures
from pipeline.study.space import apply_params, fit_options

EPOCHS = 8


RAW_PARAMS = {
    "seed": 3,
    "train": {"epochs": EPOCHS, "batch_size": 32, "learning_rate": 0.01},
    "tune": {
        "n_trials": 4,
        "study_name": "report-test",
        "space": {"n_layers": {"low": 1, "high": 2}, "n_units": {"low": 8, "high": 32}},
    },
    "report": {"learning_curve_fractions": [0.25, 1.0]},
}


def small_params() -> Params:
    return params_from_dict(RAW_PARAMS)


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def build_project(root: Path, params: Params, n_trials: int = 4, train_dev: bool = False) -> Path:
    """Write data/split, reports/* and models/final.* under ``root`` as the real stages would."""
    X, y = digits_arrays()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))[:360]
    X, y = ((X[idx] - X[idx].mean(0)) / (X[idx].std(0) + 1e-8)).astype(np.float32), y[idx].astype(np.int64)
    bounds = {"train": (0, 300), "dev": (300, 330), "test": (330, 360)}
    if train_dev:
        bounds = {"train": (0, 260), "train_dev": (260, 300), "dev": (300, 330), "test": (330, 360)}
    split = root / "data/split"
    split.mkdir(parents=True)
    for name in ("train", "train_dev", "dev", "test"):
        a, b = bounds.get(name, (0, 0))
        np.save(split / f"X_{name}.npy", X[a:b])
        np.save(split / f"y_{name}.npy", y[a:b])
    classes = [str(c) for c in range(10)]
    _write(split / "normalizer.json", {"classes": classes, "image_shape": [8, 8], "source": "digits"})
    counts = {k: {c: int(np.sum(y[a:b] == i)) for i, c in enumerate(classes)} for k, (a, b) in bounds.items()}
    sizes = {k: b - a for k, (a, b) in bounds.items()}
    _write(root / "reports/split.json", {"sizes": sizes, "class_counts": counts, "duplicates": {"count": 0}})

    Xtr, ytr, Xdv, ydv = (
        X[:300].T if not train_dev else X[:260].T,
        y[:300] if not train_dev else y[:260],
        X[300:330].T,
        y[300:330],
    )

    def build(values: dict) -> tuple[nn.Architecture, nn.FitOptions]:
        cfg = apply_params(params, values)
        arch = nn.Architecture.build(64, 10, cfg.model.hidden_layers)
        return arch, fit_options(cfg.train)

    def objective(trial: optuna.Trial) -> float:
        s = params.tune.space
        values = {
            "learning_rate": trial.suggest_float("learning_rate", s.learning_rate.low, s.learning_rate.high, log=True),
            "n_layers": trial.suggest_int("n_layers", s.n_layers.low, s.n_layers.high),
            "n_units": trial.suggest_int("n_units", s.n_units.low, s.n_units.high, log=True),
        }
        off = trial.suggest_categorical("l2", ["on", "off"]) == "off"
        values["l2_lambda"] = (
            0.0 if off else trial.suggest_float("l2_lambda", s.l2_lambda.low, s.l2_lambda.high, log=True)
        )
        values["keep_prob"] = trial.suggest_float("keep_prob", s.keep_prob.low, s.keep_prob.high)
        arch, hp = build(values)
        w = nn.fit(Xtr, ytr, arch, hp, seed=params.seed).weights
        trial.set_user_attr("train_error", nn.error_rate(Xtr, ytr, w, arch))
        dev_error = nn.error_rate(Xdv, ydv, w, arch)
        trial.set_user_attr("dev_error", dev_error)
        trial.set_user_attr("values", values)
        trial.set_user_attr("epochs_trained", EPOCHS)
        predictions[trial.number] = nn.predict(Xdv, w, arch)
        return dev_error

    predictions: dict[int, np.ndarray] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="report-test", sampler=optuna.samplers.TPESampler(seed=params.seed))
    study.optimize(objective, n_trials=n_trials)
    (root / "reports/study").mkdir(parents=True, exist_ok=True)
    study.trials_dataframe().to_csv(root / "reports/study/trials.csv", index=False)
    numbers = sorted(predictions)
    np.savez(
        root / "reports/study/dev_predictions.npz",
        trial_numbers=np.array(numbers, dtype=np.int64),
        predictions=np.stack([predictions[n] for n in numbers]).astype(np.int16),
        y_dev=ydv.astype(np.int64),
    )
    best = study.best_trial
    _write(
        root / "reports/study/best_params.json",
        {
            "study_name": "report-test",
            "trial_number": best.number,
            "value": best.value,
            "params": best.user_attrs["values"],
        },
    )

    arch, hp = build(best.user_attrs["values"])
    result = nn.fit(Xtr, ytr, arch, hp, X_dev=Xdv, y_dev=ydv, seed=params.seed)
    save_model(root / "models/final", result.weights, arch, {"classes": classes})
    keys = ("epoch", "train_cost", "dev_cost", "dev_error", "learning_rate")
    _write(root / "reports/train_history.json", [{k: getattr(h, k) for k in keys} for h in result.history])
    health = [{"epoch": h.epoch, **dataclasses.asdict(layer)} for h in result.history for layer in h.health]
    _write(root / "reports/train_health.json", health)
    _write(
        root / "reports/train.json",
        {
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "stopped_early": False,
            "seconds": round(result.seconds, 3),
            "settings_from": f"study trial {best.number}",
        },
    )
    metrics: dict = {}
    for name, (a, b) in bounds.items():
        Xs, ys = (X[a:b].T, y[a:b])
        metrics |= {f"{name}_error": nn.error_rate(Xs, ys, result.weights, arch), f"n_{name}": b - a}
    pred = nn.predict(X[330:360].T, result.weights, arch)
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (y[330:360], pred), 1)
    metrics["confusion_matrix"] = {"labels": classes, "matrix": cm.tolist()}
    _write(root / "reports/metrics.json", metrics)
    return root


@pytest.fixture(scope="module")
def fake_figures() -> Iterator[None]:
    """Every figure as a fixed PNG: for tests of the prose and the numbers (matplotlib takes ~0.3 s a figure)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in dir(figures):
            if name.endswith("_figure"):
                mp.setattr(figures, name, lambda *args, **kwargs: b"\x89PNG fake")
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params]:
    params = small_params()
    return build_project(tmp_path_factory.mktemp("project"), params), params
