"""The final network as a registered MLflow 3 model: logged pickle-free, with its run's params, curves and data.

The model is logged *from code*: ``mlflow_model.py`` beside this file is the pyfunc that MLflow
runs when the model loads, and the modules it imports (``INFERENCE_CODE``) are copied into the
model, so serving needs no install of this repository and keeps the code the model was trained
with. ``mlflow_model.py`` is never imported by this package.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.errors import DataError
from pipeline.tracking.curves import history_points
from pipeline.tracking.inputs import DATA_HASH_TAG, Datasets, data_hash, dataset_inputs, log_inputs
from pipeline.tracking.store import client, commit_tags, experiment_id, now_ms, store_errors, text

MODEL_FILE = Path(__file__).with_name("mlflow_model.py")
PACKAGE = Path(__file__).parents[1]  # pipeline/
# What mlflow_model.py imports, relative to the package: shipped with the logged model.
INFERENCE_CODE = ("__init__.py", "errors.py", "nn/*.py", "data/__init__.py", "data/normalize.py")


def log_final_model(
    model_path: str | Path,
    name: str,
    alias: str,
    *,
    experiment: str,
    input_example: Any = None,
    normalizer: str | Path | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    datasets: Datasets | None = None,
    history: Iterable[Any] | None = None,
    compare_on: str = "dev_error",
    force_alias: bool = False,
) -> Registered:
    """Log the saved network pickle-free (pyfunc from code), register it as ``name`` and alias it.

    ``model_path`` is the path without suffix given to ``pipeline.data.models.save_model`` (``.npz`` weights
    and ``.json`` architecture). ``normalizer`` is the split stage's normalizer.json, applied to
    raw rows inside the served model. The model is logged to ``run_id`` if given, else to a new
    run "final-model" in ``experiment`` (a child of ``parent_run_id`` if given). ``input_example``
    (a few raw rows) sets the model's schema: float64 rows of n_x values; without one there is none.

    ``params`` go to the run and to the logged model; ``metrics`` too, linked to the logged model
    so that ``mlflow.search_logged_models`` finds and ranks it. ``datasets`` (see
    ``pipeline.tracking.inputs``) become the run's inputs and its ``data_hash`` tag. ``history``
    (the fit's epoch logs) becomes the run's per-epoch curves, as on a trial run.
    The alias moves to the new version only if its ``compare_on`` metric is at least as good (as
    low) as the current alias holder's on the same data (equal ``data_hash``), or ``force_alias``;
    on other data the two are not comparable and the alias moves. Returns what was registered and
    why the alias moved or stayed.
    """
    model_path = Path(model_path).with_suffix("")
    normalizer = None if normalizer is None else Path(normalizer)
    artifacts = {"weights": model_path.with_suffix(".npz"), "architecture": model_path.with_suffix(".json")}
    if normalizer is not None:
        artifacts["normalizer"] = normalizer
    _check_model_files(model_path, normalizer)
    inputs = dataset_inputs(datasets or {})
    # The example fixes the schema: float64 rows of n_x values (JSON bodies are cast to it).
    example = None if input_example is None else np.asarray(input_example, dtype=np.float64)
    if example is not None:
        example = example.reshape(len(example), -1)
    run_tags = {k: text(v) for k, v in (tags or {}).items()}
    if datasets and DATA_HASH_TAG not in run_tags:
        run_tags[DATA_HASH_TAG] = data_hash(datasets)
    with store_errors():
        mlflow_client = client()
        if run_id is None:
            new_tags = commit_tags() | ({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})
            exp_id = experiment_id(mlflow_client, experiment)
            run_id = mlflow_client.create_run(exp_id, run_name="final-model", tags=new_tags).info.run_id
        ts = now_ms()
        mlflow_client.log_batch(
            run_id,
            metrics=history_points(history or (), ts),
            params=[Param(k, text(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in run_tags.items()],
        )
        if inputs:
            log_inputs(mlflow_client, run_id, inputs)
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as staging:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_FILE),
                artifacts={k: str(v) for k, v in artifacts.items()},
                code_paths=[str(_stage_inference_code(Path(staging)))],
                input_example=example,
                # Pinned here, so MLflow need not infer them by loading the model in a subprocess.
                pip_requirements=_requirements(),
                registered_model_name=name,
                params={k: text(v) for k, v in (params or {}).items()} or None,
            )
            final = [Metric(k, float(v), ts, 0, model_id=info.model_id) for k, v in (metrics or {}).items()]
            mlflow_client.log_batch(run_id, metrics=final)
        version = str(info.registered_model_version)
        move, reason = _alias_decision(
            mlflow_client, name, alias, (metrics or {}).get(compare_on), compare_on, run_tags.get(DATA_HASH_TAG)
        )
        if move or force_alias:
            mlflow_client.set_registered_model_alias(name, alias, version)
            reason = reason if move else f"{reason}; moved anyway (forced)"
    return Registered(f"models:/{name}/{version}", version, move or force_alias, reason)


class Registered(NamedTuple):
    uri: str  # models:/<name>/<version>
    version: str
    alias_moved: bool
    reason: str  # one line: the comparison with the alias's previous holder


def _alias_decision(
    mlflow_client: Any, name: str, alias: str, value: float | None, metric: str, digest: str | None
) -> tuple[bool, str]:
    """Whether ``alias`` should move to a new version scoring ``value`` on ``metric``, and why, in words."""
    try:
        current = mlflow_client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return True, f"@{alias} set (no version held it)"
    run = mlflow_client.get_run(current.run_id)
    old, old_digest = run.data.metrics.get(metric), run.data.tags.get(DATA_HASH_TAG)
    if value is None or old is None:
        return True, f"@{alias} moved from version {current.version} ({metric} not logged on both)"
    if digest is None or old_digest != digest:
        return True, f"@{alias} moved from version {current.version}: other data, so {metric} is not comparable"
    if value <= old:
        return True, f"@{alias} moved from version {current.version}: {metric} {value:.4f} <= {old:.4f}"
    return False, f"@{alias} stays on version {current.version}: {metric} {value:.4f} > {old:.4f} on the same data"


def _check_model_files(model_path: Path, normalizer: Path | None) -> None:
    """Fail before logging anything if the served model could not load."""
    from pipeline.data.models import load_model
    from pipeline.data.normalize import Normalizer

    _, _, extra = load_model(model_path)
    if normalizer is None:
        if "normalizer" not in extra:
            raise DataError(f"{model_path}.json: no normalizer in extra; pass normalizer=<split dir>/normalizer.json")
        Normalizer.from_dict(extra["normalizer"])
        return
    try:
        spec = json.loads(normalizer.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{normalizer}: unreadable normalizer ({type(e).__name__}); rerun the split stage") from None
    Normalizer.from_dict(spec)


def _stage_inference_code(staging: Path) -> Path:
    """Copy the modules the served model imports into ``staging/pipeline``."""
    target = staging / "pipeline"
    for pattern in INFERENCE_CODE:
        for source in PACKAGE.glob(pattern):
            (target / source.parent.relative_to(PACKAGE)).mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.relative_to(PACKAGE))
    return target


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "numpy", "pandas")]
