"""A sweep's configuration: params.yaml with the command line's overrides, and the runtime state.

``SweepConfig`` is what the user asked for and never changes during a sweep: the params (with
``--n-trials``, ``--workers``, ... applied to ``params.tune`` by ``dataclasses.replace``, so
``TuneParams`` validates them in the one place it validates params.yaml) and the options that
are not params (storage URL, BLAS threads, heartbeat). ``SweepState`` is what the launcher finds
out when it opens the study: its name in storage, the fingerprint, the MLflow parent run, the
start time. Both travel to worker processes as one JSON payload.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from pipeline.config import PRUNERS as PRUNER_NAMES
from pipeline.config import Params, TuneParams, params_from_dict
from pipeline.errors import ConfigError
from pipeline.paths import SPLIT_DIR
from pipeline.study import pruning
from pipeline.study.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, resolve_url

# The keys of params.tune that the command line may override (None: keep params.yaml's value).
TUNE_OVERRIDES = ("n_trials", "timeout", "n_workers", "storage", "study_name", "pruner")


@dataclass(frozen=True)
class SweepConfig:
    """Everything every process of one sweep runs with."""

    params: Params  # params.yaml with the command line's tune.* overrides applied
    storage: str  # the resolved URL of tune.storage
    root: str = "."  # the workspace whose data/split the trials read
    threads: int | None = None  # --threads: BLAS threads per worker; None: train.blas_threads, else chosen per trial
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    tracking: bool = True
    allow_mixed: bool = False  # --allow-mixed: resume a study whose search settings differ, on purpose

    @property
    def tune(self) -> TuneParams:
        return self.params.tune

    @property
    def n_trials(self) -> int:
        return self.tune.n_trials  # the cap on COMPLETE + PRUNED trials over all runs and workers

    @property
    def n_workers(self) -> int:
        return self.tune.n_workers

    @property
    def split_dir(self) -> Path:
        return Path(self.root) / SPLIT_DIR

    @property
    def blas_threads(self) -> int | None:
        """The override (--threads, else train.blas_threads); None: each trial chooses (pipeline.threads)."""
        return self.threads if self.threads is not None else self.params.train.blas_threads


@dataclass(frozen=True)
class SweepState:
    """What the launcher found when it opened the study (``launch.open_sweep``)."""

    study_name: str  # the study in storage: <tune.study_name>-<fingerprint digest>
    fingerprint: dict[str, str] = field(default_factory=dict)  # part -> hash, of this machine's data and code
    digest: str = ""
    parent_run_id: str | None = None  # None: no MLflow runs (tracking off, or nothing to run)
    started: float = 0.0  # time.time() when the sweep opened
    deadline: float | None = None  # no trial starts after this time.time()
    counted_at_start: int = 0  # trials already counted when the sweep opened, for the ETA
    previous: str | None = None  # the newest earlier study of the same base name, when a new one starts
    changed: tuple[str, ...] = ()  # the fingerprint parts that differ from ``previous``
    details: tuple[str, ...] = ()  # the readable settings that differ, "train.epochs: 10 -> 12"
    complete: bool = False  # the study was at its cap (or its noise floor): nothing runs
    stop_cause: str = ""  # why nothing runs, when the noise floor stopped the study


def config_from_params(
    params: Params,
    *,
    root: str | Path = ".",
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    tracking: bool | None = None,
    allow_mixed: bool = False,
    **tune: Any,
) -> SweepConfig:
    """The sweep configuration: ``tune`` holds command-line values for TUNE_OVERRIDES (None: keep)."""
    unknown = sorted(set(tune) - set(TUNE_OVERRIDES))
    if unknown:
        raise TypeError(f"unknown sweep option {unknown[0]!r}")  # a caller's bug, not a user's
    overrides = {k: v for k, v in tune.items() if v is not None}
    params = dataclasses.replace(params, tune=dataclasses.replace(params.tune, **overrides))
    # dataclasses.replace runs TuneParams' checks, but a Literal type is only checked by the loader.
    if params.tune.pruner not in PRUNER_NAMES:
        raise ConfigError(f"unknown pruner '{params.tune.pruner}'; choose one of {', '.join(PRUNER_NAMES)}")
    if threads is not None and threads < 1:
        raise ConfigError("--threads: BLAS threads per worker must be >= 1")
    options = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period, "tracking": tracking}
    return SweepConfig(
        params=params,
        storage=resolve_url(params.tune.storage),
        root=str(root),
        threads=threads,
        allow_mixed=allow_mixed,
        **{k: v for k, v in options.items() if v is not None},
    )


def to_payload(cfg: SweepConfig, state: SweepState) -> str:
    """The JSON a worker process is started with."""
    return json.dumps({"config": dataclasses.asdict(cfg), "state": dataclasses.asdict(state)})


def from_payload(text: str) -> tuple[SweepConfig, SweepState]:
    doc = json.loads(text)
    config = doc["config"]
    config["params"] = params_from_dict(config["params"], source="the launcher's params")
    state = doc["state"]
    state["changed"], state["details"] = tuple(state["changed"]), tuple(state["details"])
    return SweepConfig(**config), SweepState(**state)


# --- sampler and pruner --------------------------------------------------------------------------


def make_sampler(params: Params, worker_index: int = 0, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """TPE seeded from params.seed; each worker and each resumed run gets its own stream.

    Without the worker index, workers would draw the same random start-up points; without the
    number of existing trials, a resumed run would redraw the first run's points.
    """
    seed = int(np.random.SeedSequence([params.seed, worker_index, n_existing]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=params.tune.startup_trials)


def _max_epochs(params: Params) -> int:
    space = params.tune.space
    return space.epochs.high if space.epochs is not None else params.train.epochs


def median_settings(params: Params) -> dict[str, int]:
    """The median rule's settings: pruning looks at the dev cost of every epoch, never in the first tenth."""
    return {"n_startup_trials": params.tune.startup_trials, "n_warmup_steps": max(1, _max_epochs(params) // 10)}


PRUNERS: dict[str, Callable[[Params], optuna.pruners.BasePruner]] = {
    # pruning.MedianPruner is Optuna's, reading the finished trials once a second, not every epoch.
    "median": lambda p: pruning.MedianPruner(**median_settings(p)),
    "hyperband": lambda p: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=_max_epochs(p)),
    "none": lambda p: optuna.pruners.NopPruner(),
}
