"""MLflow tracking: one experiment per study, a parent run per sweep, a child run per trial, the final model.

The only package that imports mlflow; a leaf that the study and the stages call. By job:

- ``store``: where the store lives (``tracking_uri``), the client, experiment ids, the git commit,
  store failures as ``StorageError``.
- ``study_run``: the sweep's parent run (``prepare_study_run``, ``finish_study_run``,
  ``close_dead_parent_runs``).
- ``trial_run``: a trial's child run (``TrialRun``) and runs whose worker died (``mark_orphans``).
- ``outbox``: trial runs held in memory while the tracking server is away (``OUTBOX``, ``flush_outbox``).
- ``curves`` and ``inputs``: what a run logs per epoch, and the data it read as MLflow datasets.
- ``runs``: existing runs (``log_to_run``, ``tag_runs``, ``parent_run_of``, ``run_status``,
  ``live_run_experiment``).
- ``model``: the final model, logged pickle-free and registered (``log_final_model``), served by
  ``mlflow_model.py``.
"""

import os

# Client telemetry costs a DNS lookup per process; this pipeline never reaches the network. Set
# before mlflow is first imported: every submodule import runs this file first.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# MLflow's own HTTP defaults (7 retries, backoff factor 2, 120 s timeout) let one call to a dead
# tracking server take about 4 minutes. Ours: 2 retries after 0 and about 2 s, each attempt at
# most 10 s, so a refused connection fails in about 3 s. A value the user set is kept (a slow
# link uploading big models may want a longer timeout). Inherited by the sweep's workers.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import mlflow  # re-exported: tests and benchmarks reach MLflow's own API through this package
from mlflow.tracking import MlflowClient

from pipeline.tracking.curves import HEALTH_FIELDS
from pipeline.tracking.inputs import DATA_HASH_TAG, Datasets, data_hash
from pipeline.tracking.model import INFERENCE_CODE, Registered, log_final_model
from pipeline.tracking.outbox import OUTBOX, flush_outbox
from pipeline.tracking.runs import live_run_experiment, log_to_run, parent_run_of, run_status, tag_runs
from pipeline.tracking.store import STATUSES, TrackingUnreachable, git_commit, preload, store_name, tracking_uri
from pipeline.tracking.study_run import (
    StudySummary,
    close_dead_parent_runs,
    finish_study_run,
    prepare_study_run,
)
from pipeline.tracking.trial_run import FAIL_CAUSE_TAG, TrialRun, mark_orphans

__all__ = [
    "DATA_HASH_TAG",
    "FAIL_CAUSE_TAG",
    "HEALTH_FIELDS",
    "INFERENCE_CODE",
    "OUTBOX",
    "STATUSES",
    "Datasets",
    "MlflowClient",
    "Registered",
    "StudySummary",
    "TrackingUnreachable",
    "TrialRun",
    "close_dead_parent_runs",
    "data_hash",
    "finish_study_run",
    "flush_outbox",
    "git_commit",
    "live_run_experiment",
    "log_final_model",
    "log_to_run",
    "mark_orphans",
    "mlflow",
    "parent_run_of",
    "preload",
    "prepare_study_run",
    "run_status",
    "store_name",
    "tag_runs",
    "tracking_uri",
]
