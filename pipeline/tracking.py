"""MLflow tracking: one experiment per study, a parent run per sweep, a child run per trial.

This is the only module that imports mlflow. Everything goes through ``MlflowClient`` with
explicit run ids rather than the fluent active-run stack, so worker processes and threads can
attach child runs to a parent they did not start.

Where the store lives (``tracking_uri``): ``MLFLOW_TRACKING_URI`` if set, else
``sqlite:///<repo root>/mlflow.db`` with an absolute path; a relative sqlite path is taken from the
repo root too. The repo root is ``PIPELINE_HOME`` if
set, else ``DVC_ROOT`` (DVC sets it for every stage command, and for queued experiments it points
at the *workspace*, not at the temporary copy under ``.dvc/tmp/exps``), else the nearest folder
upward from the working directory holding ``.dvc`` or ``.git`` -- and if that folder is itself a
temporary copy under ``.dvc/tmp/exps``, the workspace above it. Artifacts of a local sqlite
store go to ``mlruns/`` beside the database file, never to the working directory (a temporary
copy is deleted after the experiment).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

# Client telemetry costs a DNS lookup per process; this pipeline never reaches the network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
import numpy as np
import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import DataError, StorageError
from pipeline.paths import repo_root

__all__ = [
    "TrialRun",
    "finish_study_run",
    "log_final_model",
    "log_to_run",
    "mark_orphans",
    "parent_run_of",
    "prepare_study_run",
    "repo_root",
    "tracking_uri",
]

MAX_METRICS_PER_BATCH = 1000  # MLflow's server-side limit for one log_batch
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_VALUE_CHARS = 5000  # params allow 6000, tags 8000; one cap for both keeps it simple
FAIL_CAUSE_TAG = "optuna.fail_cause"
STATUSES = ("FINISHED", "KILLED", "FAILED")
MODEL_FILE = Path(__file__).with_name("mlflow_model.py")
# What mlflow_model.py imports, relative to the package: shipped with the logged model.
INFERENCE_CODE = ("__init__.py", "errors.py", "nn/*.py", "data/__init__.py", "data/normalize.py")


# --- where the store lives ---------------------------------------------------------------------


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the sqlite store at the repo root (absolute path).

    A relative sqlite path in MLFLOW_TRACKING_URI is taken from the repo root, not the working
    directory, so a DVC experiment's temporary copy writes to the workspace's file too.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            uri = f"sqlite:///{repo_root() / path}"
    return uri


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local sqlite store sit beside the DB; other stores use their own default."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    return str(db.parent / "mlruns" / re.sub(r"[^A-Za-z0-9._-]+", "_", experiment))


def _client() -> MlflowClient:
    uri = tracking_uri()
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)  # the fluent API (log_model, registry) follows the same store
    return MlflowClient(uri)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the repository the run executes in, or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text[:MAX_VALUE_CHARS]


def _batched(client: MlflowClient, run_id: str, metrics=(), params=(), tags=()) -> None:
    """log_batch within the per-call limits (1000 metrics, 100 params plus tags)."""
    metrics, small = list(metrics), [*params, *tags]
    n_calls = max(math.ceil(len(metrics) / MAX_METRICS_PER_BATCH), math.ceil(len(small) / MAX_PARAMS_TAGS_PER_BATCH))
    for i in range(n_calls):
        chunk = small[i * MAX_PARAMS_TAGS_PER_BATCH : (i + 1) * MAX_PARAMS_TAGS_PER_BATCH]
        client.log_batch(
            run_id,
            metrics=metrics[i * MAX_METRICS_PER_BATCH : (i + 1) * MAX_METRICS_PER_BATCH],
            params=[p for p in chunk if isinstance(p, Param)],
            tags=[t for t in chunk if isinstance(t, RunTag)],
        )


def _reason(e: BaseException) -> str:
    """The first line of an error, for a one-line message."""
    text = (e.message if isinstance(e, MlflowException) else str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _now_ms() -> int:
    return int(time.time() * 1000)


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a sqlite store) or restored if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri, name))
        except MlflowException:  # another launcher created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


# --- study (parent) run ------------------------------------------------------------------------


def prepare_study_run(study_name: str, experiment: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
    """Create the study's experiment if needed and a RUNNING parent run for this sweep; return its id.

    Call once in the launcher before workers start: creating a fresh sqlite store runs migrations,
    which race when several processes do it at once.
    """
    uri = tracking_uri()
    try:
        client = _client()
        exp_id = _experiment_id(client, experiment or study_name)
        all_tags = {"optuna.study": study_name, "git.commit": git_commit(), "mlflow.source.git.commit": git_commit()}
        all_tags |= {k: _text(v) for k, v in (tags or {}).items()}
        run = client.create_run(exp_id, run_name=f"sweep-{study_name}", tags=all_tags)
    except (MlflowException, SQLAlchemyError, OSError, ImportError) as e:  # ImportError: no driver for the URI
        raise StorageError(f"MLflow store {uri}: {_reason(e)}; check MLFLOW_TRACKING_URI") from None
    return run.info.run_id


def finish_study_run(parent_run_id: str, study: optuna.Study, status: str = "FINISHED") -> None:
    """Log the study's outcome so far to its parent run (best params and value, importances, plots).

    The run ends with ``status``: FINISHED, or KILLED for a sweep cut short by Ctrl-C.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    client = _client()
    counts = {state.name.lower(): 0 for state in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    metrics = {f"n_trials_{state}": n for state, n in counts.items()} | {"n_trials": sum(counts.values())}
    params, tags = {}, {}
    try:
        best = study.best_trial
    except (ValueError, RuntimeError):  # no finished trial (or a multi-objective study)
        best = None
        tags["best.none"] = "no trial completed"
    if best is not None:
        params = {f"best_{k}": v for k, v in best.params.items()}
        metrics |= {"best_value": best.value, "best_trial_number": best.number}
        tags["best.mlflow_run_id"] = best.user_attrs.get("mlflow_run_id", "")
    importances = _importances(study)
    metrics |= {f"importance_{k}": v for k, v in importances.items()}
    if not importances:
        tags["importance.none"] = "too few completed trials to rank parameters"
    ts = _now_ms()
    _batched(
        client,
        parent_run_id,
        metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
        params=[Param(k, _text(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    if importances:
        client.log_dict(parent_run_id, importances, "importances.json")
    _log_study_plots(client, parent_run_id, study, with_importances=bool(importances))
    client.set_terminated(parent_run_id, status)


def _importances(study: optuna.Study) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:  # Optuna would warn and return equal (meaningless) importances
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # fewer than two completed trials, or nothing varied
        return {}


def _log_study_plots(client: MlflowClient, run_id: str, study: optuna.Study, with_importances: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    plots = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "intermediate_values": vis.plot_intermediate_values,
    }
    skipped = []
    if not with_importances:
        skipped.append("param_importances")
        del plots["param_importances"]
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        skipped.append("intermediate_values")  # nothing reported: Optuna would log a warning, draw an empty plot
        del plots["intermediate_values"]
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
        except (ValueError, RuntimeError):
            skipped.append(name)
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        try:
            client.log_figure(run_id, fig, f"plots/{name}.png")
        finally:
            plt.close(fig)
    if skipped:
        client.set_tag(run_id, "plots.skipped", ",".join(skipped))


# --- trial (child) runs ------------------------------------------------------------------------


class TrialRun:
    """A trial's child run: link tags at start; params and per-epoch metrics buffered and batched.

    Use as a context manager. Leaving the block by an exception without ``end()`` ends the run
    FAILED (KILLED for KeyboardInterrupt or ``optuna.TrialPruned``) with the cause as a tag, and
    the exception propagates.

    The buffer is flushed every ``flush_every`` epochs, when it holds a full batch (1000 points),
    when ``flush_seconds`` passed since the last flush, and at the end: one sqlite write costs
    about 10 ms, so writing per epoch would cost more than a small network's epoch, and a trial of
    up to 200 epochs that ends within 30 s is written in one call.
    """

    def __init__(
        self,
        parent_run_id: str,
        study_name: str,
        trial_number: int,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        *,
        flush_every: int = 200,
        flush_seconds: float = 30.0,
    ) -> None:
        self._client = _client()
        self._flush_every, self._flush_seconds = flush_every, flush_seconds
        self._buffer: list[Metric] = []
        self._pending_epochs, self._last_flush, self._last_epoch = 0, time.monotonic(), 0
        self._learning_rate: float | None = None
        self._train_seconds = 0.0
        self.ended = False
        experiment_id = _experiment_of(self._client, parent_run_id)
        all_tags = {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            "optuna.study": study_name,
            "optuna.trial_number": str(trial_number),
            "git.commit": git_commit(),
            "mlflow.source.git.commit": git_commit(),
        } | {k: _text(v) for k, v in (tags or {}).items()}
        run = self._client.create_run(experiment_id, run_name=f"trial-{trial_number}", tags=all_tags)
        self.run_id: str = run.info.run_id
        # Sent with the first flush: one sqlite write less per trial (mark_orphans writes them for
        # a run whose worker died first).
        self._params = [Param(k, _text(v)) for k, v in params.items()]

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ended:
            return
        if exc is None:
            self.end("FINISHED")
            return
        killed = isinstance(exc, KeyboardInterrupt | optuna.TrialPruned)
        # The exception in flight matters more than a store failure while recording it; a run left
        # RUNNING that way is ended by mark_orphans.
        with contextlib.suppress(MlflowException, SQLAlchemyError):
            self.end("KILLED" if killed else "FAILED", tags={FAIL_CAUSE_TAG: f"{type(exc).__name__}: {exc}"})

    def on_epoch(self, log: Any) -> None:
        """Fit callback (takes a pipeline.nn EpochLog): buffer this epoch's metrics.

        Every epoch: train_cost, dev_cost, dev_error (the last two with dev data). The learning
        rate only when it changes, and the epochs' total seconds at the end: each stored point
        costs about 0.1 ms of the trial's time.
        """
        ts = _now_ms()
        values = {"train_cost": log.train_cost, "dev_cost": log.dev_cost, "dev_error": log.dev_error}
        if log.learning_rate != self._learning_rate:
            values["learning_rate"] = self._learning_rate = log.learning_rate
        self._buffer += [Metric(k, float(v), ts, log.epoch) for k, v in values.items() if v is not None]
        self._pending_epochs += 1
        self._last_epoch = log.epoch
        self._train_seconds += log.seconds
        if (
            self._pending_epochs >= self._flush_every
            or len(self._buffer) >= MAX_METRICS_PER_BATCH
            or time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None) -> None:
        """Write the params, buffered epochs, final metrics and tags in as few log_batch calls as possible."""
        extra = [Metric(k, float(v), _now_ms(), self._last_epoch) for k, v in (metrics or {}).items()]
        batch, self._buffer = self._buffer + extra, []
        params, self._params = self._params, []
        run_tags = [RunTag(k, _text(v)) for k, v in (tags or {}).items()]
        if batch or params or run_tags:
            _batched(self._client, self.run_id, metrics=batch, params=params, tags=run_tags)
        self._pending_epochs, self._last_flush = 0, time.monotonic()

    def end(
        self,
        status: str = "FINISHED",
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Flush, log the final metrics (use keys distinct from the per-epoch ones) and tags, end with ``status``."""
        if status not in STATUSES:
            raise ValueError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")
        if self.ended:
            return
        self.ended = True  # even if the store fails below, never try to end twice
        if self._last_epoch:
            metrics = {"train_seconds": self._train_seconds, **(metrics or {})}
        try:
            self.flush(metrics, tags)
        finally:
            self._client.set_terminated(self.run_id, status)


@lru_cache(maxsize=64)
def _experiment_of_run(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.experiment_id


def _experiment_of(client: MlflowClient, run_id: str) -> str:
    """A run's experiment id, cached: every trial of a worker asks for its parent's."""
    return _experiment_of_run(client.tracking_uri, run_id)


def mark_orphans(study: optuna.Study) -> int:
    """End the still-RUNNING runs of finished trials (a worker killed mid-trial); return how many.

    FAIL -> FAILED, PRUNED -> KILLED, COMPLETE -> FINISHED. A trial's run is the one named by its
    ``mlflow_run_id`` user attribute or, for a worker killed before it could set that, a run tagged
    with the study name and the trial's number. Cheap enough to call after every trial: one search
    for RUNNING runs in the experiments of the study's parent runs (user attributes
    ``mlflow_parent_run_id`` and ``mlflow_parent_run_ids``); without those, one lookup per trial.
    """
    status_of = {
        optuna.trial.TrialState.FAIL: "FAILED",
        optuna.trial.TrialState.PRUNED: "KILLED",
        optuna.trial.TrialState.COMPLETE: "FINISHED",
    }
    finished = {t.number: t for t in study.get_trials(deepcopy=False, states=tuple(status_of))}
    linked = {t.user_attrs["mlflow_run_id"]: t for t in finished.values() if t.user_attrs.get("mlflow_run_id")}
    client = _client()
    orphans: dict[str, tuple[optuna.trial.FrozenTrial, Any]] = {}  # run id -> (trial, run)
    parents = [study.user_attrs.get("mlflow_parent_run_id"), *study.user_attrs.get("mlflow_parent_run_ids", [])]
    experiments = set()  # earlier sweeps may have logged to other experiments
    for parent in filter(None, parents):
        with contextlib.suppress(MlflowException):  # a parent run deleted since
            experiments.add(_experiment_of(client, parent))
    if experiments:
        for run in _running_runs(client, sorted(experiments)):
            tags = run.data.tags
            number = tags.get("optuna.trial_number", "")
            if run.info.run_id in linked:
                orphans[run.info.run_id] = linked[run.info.run_id], run
            elif tags.get("optuna.study") == study.study_name and number.isdigit() and int(number) in finished:
                orphans[run.info.run_id] = finished[int(number)], run
    else:  # no parent recorded: look each linked run up
        for run_id, trial in linked.items():
            try:
                run = client.get_run(run_id)
            except MlflowException:  # run deleted, or logged to another store
                continue
            if run.info.status == "RUNNING":
                orphans[run_id] = trial, run
    for run_id, (trial, run) in orphans.items():
        # A run's params wait for its first flush; a worker killed before that never wrote them.
        params = [] if run.data.params else [Param(k, _text(v)) for k, v in trial.params.items()]
        cause = RunTag(FAIL_CAUSE_TAG, "worker died; the trial was ended by the Optuna heartbeat check")
        _batched(client, run_id, params=params, tags=[cause])
        client.set_terminated(run_id, status_of[trial.state])
    return len(orphans)


def _running_runs(client: MlflowClient, experiment_ids: list[str]) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


# --- existing runs ------------------------------------------------------------------------------


def log_to_run(
    run_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    files: tuple[str | Path, ...] | list[str | Path] = (),
    artifact_dir: str | None = None,
) -> None:
    """Add metrics, tags and files to an existing run (any status) without changing its status."""
    try:
        client = _client()
        ts = _now_ms()
        _batched(
            client,
            run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()],
            tags=[RunTag(k, _text(v)) for k, v in (tags or {}).items()],
        )
        for path in files:
            client.log_artifact(run_id, str(path), artifact_dir)
    except (MlflowException, SQLAlchemyError) as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {_reason(e)}; check MLFLOW_TRACKING_URI") from None


def tag_runs(run_tags: Mapping[str, Mapping[str, Any]]) -> int:
    """Set tags on existing runs (any status); runs deleted since are skipped. Return how many were tagged."""
    client, tagged = _client(), 0
    try:
        for run_id, tags in run_tags.items():
            try:
                _batched(client, run_id, tags=[RunTag(k, _text(v)) for k, v in tags.items()])
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                continue
            tagged += 1
    except (MlflowException, SQLAlchemyError) as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {_reason(e)}; check MLFLOW_TRACKING_URI") from None
    return tagged


def parent_run_of(run_id: str) -> str | None:
    """The parent run id of a run (its ``mlflow.parentRunId`` tag), None if it has none or is gone."""
    try:
        return _client().get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
    except MlflowException:
        return None


# --- the final model ---------------------------------------------------------------------------


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
) -> str:
    """Log the saved network pickle-free (pyfunc from code), register it as ``name`` and alias it.

    ``model_path`` is the path without suffix given to ``pipeline.nn.save_model`` (``.npz`` weights
    and ``.json`` architecture). ``normalizer`` is the split stage's normalizer.json, applied to
    raw rows inside the served model. The model is logged to ``run_id`` if given, else to a new
    run "final-model" in ``experiment`` (a child of ``parent_run_id`` if given). ``input_example``
    (a few raw rows) sets the model's schema: float64 rows of n_x values; without one there is none.
    Returns ``models:/<name>@<alias>``.
    """
    model_path = Path(model_path).with_suffix("")
    normalizer = None if normalizer is None else Path(normalizer)
    artifacts = {"weights": model_path.with_suffix(".npz"), "architecture": model_path.with_suffix(".json")}
    if normalizer is not None:
        artifacts["normalizer"] = normalizer
    _check_model_files(model_path, normalizer)
    # The example fixes the schema: float64 rows of n_x values (JSON bodies are cast to it).
    example = None if input_example is None else np.asarray(input_example, dtype=np.float64)
    if example is not None:
        example = example.reshape(len(example), -1)
    try:
        client = _client()
        if run_id is None:
            run_tags = {"git.commit": git_commit(), "mlflow.source.git.commit": git_commit()}
            if parent_run_id:
                run_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
            exp_id = _experiment_id(client, experiment)
            run_id = client.create_run(exp_id, run_name="final-model", tags=run_tags).info.run_id
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as staging:
            log_to_run(run_id, metrics=metrics, tags=tags)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_FILE),
                artifacts={k: str(v) for k, v in artifacts.items()},
                code_paths=[str(_stage_inference_code(Path(staging)))],
                input_example=example,
                # Pinned here, so MLflow need not infer them by loading the model in a subprocess.
                pip_requirements=_requirements(),
                registered_model_name=name,
            )
        client.set_registered_model_alias(name, alias, str(info.registered_model_version))
    except (MlflowException, SQLAlchemyError) as e:
        raise StorageError(f"MLflow store {tracking_uri()}: {_reason(e)}; check MLFLOW_TRACKING_URI") from None
    return f"models:/{name}@{alias}"


def _check_model_files(model_path: Path, normalizer: Path | None) -> None:
    """Fail before logging anything if the served model could not load."""
    from pipeline.data.normalize import Normalizer
    from pipeline.nn import ModelFileError, load_model

    try:
        _, _, extra = load_model(model_path)
    except ModelFileError as e:
        raise DataError(str(e)) from None
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
    """Copy the modules the served model imports into ``staging/pipeline``, so serving needs no
    install of this repository and the model keeps the code it was trained with."""
    package = MODEL_FILE.parent
    target = staging / "pipeline"
    for pattern in INFERENCE_CODE:
        for source in package.glob(pattern):
            (target / source.parent.relative_to(package)).mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.relative_to(package))
    return target


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "numpy", "pandas")]
