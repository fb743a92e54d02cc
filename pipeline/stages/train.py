"""Stage ``train``: fit the final network on the training split, early-stopping and logging on dev.

Settings come from params.yaml's model and train sections, replaced by the study's best trial
(``reports/study/best_params.json``) when ``train.use_study_best`` is true and that file exists.
Writes ``models/final.{npz,json}`` (no pickle; the JSON carries the normalizer and class names so
raw pixel rows can be predicted later), ``reports/train_history.json`` (DVC plots, one row per
epoch), ``reports/train_health.json`` (per epoch and layer: weight and gradient norms, update
ratio, dead or saturated units) and ``reports/train.json`` (metrics). Never reads the test split.
A network no better on dev than always predicting the majority class is refused (exit 5). With a
target distribution (``data.target``: normalizer.json's ``distributions`` give dev as ``target``)
dev may rightly be that bad, since the data mismatch is what the report is to diagnose; the check
is then made on the training split, the distribution the network learned from.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import nn
from pipeline.config import Params, load_params
from pipeline.data import memory
from pipeline.data.models import save_model
from pipeline.data.store import load_normalizer, load_split, split_digest
from pipeline.errors import DataError, NumericalError
from pipeline.io import atomic_write_json, read_json
from pipeline.paths import BEST_PARAMS, MODEL_STEM, PREPARED_X, SPLIT_DIR
from pipeline.paths import TRAIN_HEALTH as HEALTH
from pipeline.paths import TRAIN_HISTORY as HISTORY
from pipeline.paths import TRAIN_METRICS as METRICS
from pipeline.study.space import architecture, final_settings, fit_options, trial_seed
from pipeline.threads import choose_blas_threads, limit_blas_threads


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-tracking", dest="tracking", action="store_false", help="do not log and register the model in MLflow"
    )
    parser.add_argument(
        "--force-alias",
        action="store_true",
        help="move the model alias (tracking.model_alias) to this model even if it is worse on dev than the holder",
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    m, history = train(params)
    if m["batch_clamped"]:
        print(
            f"train: warning: train.batch_size is larger than the {m['n_train']} training examples: trained full batch"
        )
    print(
        f"train: train_error={m['train_error']:.4f} dev_error={m['dev_error']:.4f} after {m['epochs']} epochs "
        f"({m['seconds']:.1f} s, settings from {m['settings_from']}) -> {MODEL_STEM}.npz"
    )
    if m["dev_error"] >= m["majority_dev_error"]:  # only saved so with a target distribution
        print(
            f"train: warning: dev error {m['dev_error']:.4f} on the target distribution is no better than the "
            f"most frequent training class ({m['majority_dev_error']:.4f}): a data mismatch (see the report)"
        )
    if args.tracking:
        registered = log_model(params, m, history, force_alias=args.force_alias)
        print(f"train: model registered as {registered.uri}; {registered.reason}")
    return 0


def resolve_settings(params: Params, root: str | Path = ".") -> tuple[Params, np.random.Generator | int, str]:
    """Apply the study's best trial if asked to and available: its parameters and its random
    stream, so the final network is exactly the one the study scored. Also say where they came from."""
    path = Path(root) / BEST_PARAMS
    best = read_json(path) if path.exists() else None
    if best is not None and not isinstance(best, dict):
        raise DataError(f"{path}: expected an object; rerun the tune stage")
    settings, number = final_settings(params, best)
    if number is None:
        return settings, params.seed, "params.yaml"
    return settings, trial_seed(params.seed, number), f"study trial {best['trial_number']}"


def log_model(
    params: Params,
    metrics: dict[str, Any],
    history: list[nn.EpochLog],
    root: Path = Path("."),
    force_alias: bool = False,
) -> Any:
    """Log the saved model to MLflow pickle-free with its settings, curves and data, register it, and
    move its alias if it is at least as good on dev as the alias's holder (``tracking.Registered``)."""
    from pipeline import tracking  # imports mlflow (~1.5 s): only when tracking is on

    best = read_json(root / BEST_PARAMS) if (root / BEST_PARAMS).exists() else {}
    base = params.tune.study_name  # a study named <base>-<fingerprint> in best_params.json
    study = best.get("study_name") or base
    raw = np.asarray(np.load(root / PREPARED_X, mmap_mode="r")[:5])  # raw rows set the input schema
    return tracking.log_final_model(
        root / MODEL_STEM,
        params.tracking.model_name,
        params.tracking.model_alias,
        experiment=params.tracking.experiment or study,
        input_example=raw,
        metrics={"train_error": metrics["train_error"], "dev_error": metrics["dev_error"]},
        tags={
            "settings_from": metrics["settings_from"],
            "optuna.study": study,
            "blas_threads": str(metrics["blas_threads"]),
        },
        params={"seed": params.seed, **flat("model", asdict(params.model)), **flat("train", asdict(params.train))},
        datasets={
            name: (X, y, split_digest(root / SPLIT_DIR, name))
            for name, (X, y) in (("train", load_split("train", root)), ("dev", load_split("dev", root)))
        },
        history=history,
        force_alias=force_alias,
    )


def flat(section: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{k}": v for k, v in values.items()}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def majority_error(y_train: np.ndarray, y_dev: np.ndarray) -> float:
    """Dev error of always answering the most frequent training class: the floor any model must beat."""
    majority = np.bincount(np.asarray(y_train)).argmax()
    return float(np.mean(np.asarray(y_dev) != majority))


def train(params: Params, root: str | Path = ".") -> tuple[dict[str, Any], list[nn.EpochLog]]:
    """Train, save the model and the reports; return the metrics written to reports/train.json and
    the epochs' logs."""
    root = Path(root)
    params, seed, settings_from = resolve_settings(params, root)
    X, y = load_split("train", root)
    X_dev, y_dev = load_split("dev", root)
    normalizer, norm_doc = load_normalizer(root)
    classes = list(norm_doc["classes"])
    arch = architecture(params.model, X.shape[1], len(classes))
    hp = fit_options(params.train)
    memory.check_working_set(
        memory.fit_set(params, X.shape[1], len(classes), len(y), len(y_dev)),
        f"train: the network {list(arch.layer_dims)} on {len(y)} x {X.shape[1]} rows",
        "lower train.batch_size (0 is full batch) or model.hidden_layers, or bring fewer examples",
    )
    # rows on disk, columns in the network: X.T is a free view of the memory-mapped file
    threads = choose_blas_threads(params.train.blas_threads, arch.layer_dims, hp.batch_size, m=len(y))
    with limit_blas_threads(threads):
        result = nn.fit(X.T, y, arch, hp, X_dev=X_dev.T, y_dev=y_dev, seed=seed)

    dev_error = nn.error_rate(X_dev.T, y_dev, result.weights, arch)
    train_error = nn.error_rate(X.T, y, result.weights, arch)
    baseline = majority_error(y, y_dev)
    # with a target distribution, "learned nothing" is judged where the network learned: on train
    on_target = (norm_doc.get("distributions") or {}).get("dev") == "target"
    checked, checked_error, floor = (
        ("train", train_error, majority_error(y, y)) if on_target else ("dev", dev_error, baseline)
    )
    keys = ("epoch", "train_cost", "dev_cost", "dev_error", "learning_rate")
    history = [{k: getattr(h, k) for k in keys} for h in result.history]
    # JSON has no inf: an update ratio over all-zero weights (init zeros) is written as null
    health = [
        {"epoch": h.epoch, **{k: _finite_or_none(v) for k, v in asdict(layer).items()}}
        for h in result.history
        for layer in h.health
    ]
    if checked_error >= floor:  # a network that learned nothing must not be saved, let alone registered
        # its curves and gradient health are complete and say why: keep them for the diagnosis
        atomic_write_json(root / HISTORY, history)
        atomic_write_json(root / HEALTH, health)
        raise NumericalError(
            f"train: {checked} error {checked_error:.4f} is no better than always predicting the most frequent "
            f"training class ({floor:.4f}) after {len(result.history)} epochs; the model was not saved. See the "
            f"per-layer gradient health in {HEALTH} (vanishing updates: try model.init he or xavier), "
            "or try a lower learning rate or more epochs"
        )
    metrics = {
        "train_error": train_error,
        "dev_error": dev_error,
        "majority_dev_error": baseline,
        "epochs": len(result.history),
        "n_train": len(y),
        "batch_clamped": hp.batch_size > len(y),  # nn.fit takes min(batch_size, m): documented in params.yaml
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 3),
        "blas_threads": threads,  # train.blas_threads, else chosen by size and free cores (pipeline.threads)
        "settings_from": settings_from,
    }
    extra = {
        "classes": classes,
        "normalizer": normalizer.to_dict(),
        "image_shape": norm_doc.get("image_shape"),
        "source": norm_doc.get("source"),
        "seed": params.seed,
        "model": asdict(params.model),
        "train": asdict(params.train),
        "settings_from": settings_from,
    }
    save_model(root / MODEL_STEM, result.weights, arch, extra)
    atomic_write_json(root / HISTORY, history)
    atomic_write_json(root / HEALTH, health)
    atomic_write_json(root / METRICS, metrics)
    return metrics, result.history
