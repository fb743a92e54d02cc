"""The stability check's fits: one configuration, one random stream, scored on train, train-dev and dev.

The fits are independent, so ``run_all`` spreads them over worker processes (spawned, one BLAS
thread each) when more than one core is free: on the default digits the check's nine fits take
about half the time on two cores. Each fit depends only on its configuration and stream, so the
numbers are the same however many workers run them. This module imports little, so a spawned
worker starts quickly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from pipeline.config import Params
from pipeline.data.store import load_split
from pipeline.nn.network import error_rate
from pipeline.nn.train import Diverged, fit
from pipeline.study.space import architecture, fit_options
from pipeline.threads import choose_blas_threads, limit_blas_threads

Data = Mapping[str, tuple[np.ndarray, np.ndarray]]  # split -> rows X (m, n_x), labels y (m,)


@dataclass(frozen=True)
class SeedRun:
    seed: int
    errors: dict[str, float] = field(default_factory=dict)  # split -> error rate
    diverged: str = ""  # why the fit stopped, when it diverged


@dataclass(frozen=True)
class Job:
    config: Params  # the configuration (params.yaml with a trial's values applied)
    n_classes: int
    entropy: tuple[int, ...]  # the random stream: np.random.default_rng(list(entropy)), fresh for each fit
    seed: int  # the stream's index s, for the report


def fit_and_score(data: Data, job: Job, threads: int | None = None) -> SeedRun:
    """One fit on ``data["train"]``, scored on every split in ``data``; ``threads`` BLAS threads
    (None: ``train.blas_threads``, else chosen by size and free cores)."""
    X, y = data["train"]
    arch = architecture(job.config.model, X.shape[1], job.n_classes)
    hp = fit_options(job.config.train)
    X_dev, y_dev = data["dev"] if hp.patience and "dev" in data else (None, None)  # early stopping needs dev
    n = threads or choose_blas_threads(job.config.train.blas_threads, arch.layer_dims, hp.batch_size, m=len(y))
    with limit_blas_threads(n):
        try:
            dev_cols = None if X_dev is None else np.asarray(X_dev).T
            stream = np.random.default_rng(list(job.entropy))
            result = fit(np.asarray(X).T, y, arch, hp, X_dev=dev_cols, y_dev=y_dev, seed=stream)
        except Diverged as e:
            return SeedRun(job.seed, diverged=str(e))
        errors = {k: float(error_rate(np.asarray(Xs).T, ys, result.weights, arch)) for k, (Xs, ys) in data.items()}
    return SeedRun(job.seed, errors)


def _worker(root: str, splits: Sequence[str], job: Job) -> SeedRun:
    data = {s: load_split(s, root) for s in splits}  # memory-mapped: each worker reads what it touches
    return fit_and_score(data, job, threads=1)  # one thread per worker: the workers share the cores


def free_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_all(root: Path, splits: Sequence[str], jobs: Sequence[Job], workers: int | None = None) -> list[SeedRun]:
    """Every job's run, in order; in ``workers`` processes (default: the free cores) when that is more than one."""
    workers = min(workers or free_cores(), len(jobs))
    if workers < 2:
        data = {s: load_split(s, root) for s in splits}
        return [fit_and_score(data, job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_worker, [str(root)] * len(jobs), [tuple(splits)] * len(jobs), jobs))
