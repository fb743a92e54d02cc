"""The data a run read, as MLflow 3 dataset inputs and one ``data_hash`` tag.

A run's ``datasets`` map a context ("train", "dev", ...) to ``(X, y, digest)``: the examples as
rows (m, n_x), their labels (m,), and the caller's content hash of the files they came from.
That digest is what MLflow stores and shows in the Dataset column; MLflow never recomputes it
(computing one reads the whole array: 12 s and 6 GB for a 1e6 x 784 float32 memmap). The rest
of what MLflow records is cheap for any size: the profile is shapes and byte counts, the schema
the dtype and row shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

Datasets = Mapping[str, tuple[np.ndarray, np.ndarray, str]]
DATA_HASH_TAG = "data_hash"
MAX_DIGEST_CHARS = 36  # the SQL stores' datasets.digest column is VARCHAR(36)
# What a SQL store (directly, or through a server's error text) says when two writers insert the
# same (experiment, name, digest) dataset row at once: sqlite, PostgreSQL, MySQL.
_DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")


def dataset_inputs(datasets: Datasets) -> list[DatasetInput]:
    """One MLflow dataset input per context, named after it, with the given digest."""
    inputs = []
    for context, (X, y, digest) in datasets.items():
        if not digest or len(digest) > MAX_DIGEST_CHARS:
            raise ValueError(f"dataset '{context}': digest must be 1 to {MAX_DIGEST_CHARS} characters, got {digest!r}")
        # The same as mlflow.log_input(from_numpy(...), context) without the fluent API's active run.
        spec = mlflow.data.from_numpy(X, targets=y, name=context, digest=digest).to_dict()
        inputs.append(DatasetInput(Dataset(**spec), [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs


def data_hash(datasets: Datasets) -> str:
    """One hash of the run's data: of the contexts and digests (the digests are content hashes already)."""
    lines = "".join(f"{context}={digest}\n" for context, (_, _, digest) in sorted(datasets.items()))
    return hashlib.blake2b(lines.encode(), digest_size=16).hexdigest()


def log_inputs(mlflow_client: MlflowClient, run_id: str, inputs: list[DatasetInput], attempts: int = 5) -> None:
    """``MlflowClient.log_inputs``, safe when several workers log the same datasets at once.

    MLflow's SQL store looks for the experiment's (name, digest) dataset row and inserts it when
    absent, in two statements: two trials starting together both insert, and the second fails on
    the table's unique key. Its row exists by then, so the call is repeated and links to it.
    """
    for attempt in range(attempts):
        try:
            mlflow_client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            if attempt == attempts - 1 or not any(s in str(e) for s in _DUPLICATE_ROW):
                raise
