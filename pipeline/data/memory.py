"""Will it fit? Estimate what a stage needs in memory before allocating it, and say so when it will not.

Two kinds of estimate, each compared with the memory available now (MemAvailable: free memory
plus what the kernel can reclaim from caches):

- a source's array: a file source is decoded into one array in memory before the prepare stage
  streams it to disk (``check_fits`` on its size);
- a stage's working set (``working_set``): the float32 rows it maps, counted once however many
  processes map them (the page cache holds one copy; a mini-batch epoch touches every row, so rows
  that do not fit would be read from disk again every epoch), plus what each training process
  allocates beyond them (``training_bytes``): weights, gradients and optimizer moments, one
  mini-batch's activations through every layer, the dev pass of every epoch, the labels, the
  prediction chunks, the interpreter itself, and any copy of the rows (another dtype than the
  file's, cross-validation folds, the report's learning-curve subsets).

Failing early, with the estimate and what to lower, beats a MemoryError traceback minutes in, or a
machine that swaps itself to a halt. ``largest_m`` inverts the estimates: the most examples that fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import Params
from pipeline.errors import DataError
from pipeline.io import gib

# A Python process with numpy, optuna and mlflow imported, before any data: about 150-250 MB
# resident (bench/bench_scale.py measures every process of `dvc repro`). Counted once per process.
PROCESS_BYTES = 256 * 2**20
# Prediction runs over column chunks of this many bytes per layer's activations (pipeline.nn.network).
PREDICT_BYTES = 2**24
MOMENTS = {"gd": 0, "momentum": 1, "adam": 2}  # optimizer state per parameter
ROW_BYTES = 4  # the data stages store float32 rows


def available_bytes() -> int:
    """Memory available for new allocations, from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(n_bytes: int, what: str, hint: str) -> None:
    """DataError (exit 3) if ``n_bytes`` exceed the memory available, naming the estimate and the memory."""
    available = available_bytes()
    if n_bytes > available:
        raise DataError(f"{what} needs about {gib(n_bytes)} in memory but {gib(available)} are available; {hint}")


@dataclass(frozen=True)
class WorkingSet:
    """A stage's memory: the rows it maps (shared by its processes) and what each process allocates."""

    mapped: int  # bytes of rows mapped, held once in the page cache
    per_process: int  # bytes each process allocates beyond them (PROCESS_BYTES included)
    processes: int = 1
    launcher: int = 0  # a process that starts the others and holds no data (the sweep's launcher)

    @property
    def total(self) -> int:
        return self.mapped + self.processes * self.per_process + self.launcher

    def describe(self) -> str:
        each = f"{self.processes} processes x {gib(self.per_process)}" if self.processes > 1 else gib(self.per_process)
        launcher = f" + {gib(self.launcher)} for the launcher" if self.launcher else ""
        return f"{gib(self.mapped)} of mapped rows + {each}{launcher}"


def training_bytes(
    layer_dims: Sequence[int],
    m_train: int,
    m_dev: int,
    batch_size: int,
    *,
    itemsize: int = 4,
    optimizer: str = "adam",
    dropout: bool = False,
    early_stopping: bool = False,
    cv_folds: int = 0,
    copied_rows: int = 0,
) -> int:
    """Bytes one training process allocates beyond the mapped rows, for ``pipeline.nn.fit`` of the network
    ``layer_dims`` on ``m_train`` examples (``batch_size`` 0: full batch), scored on ``m_dev`` each epoch.

    ``itemsize``: the network's dtype (8 for float64: fit then converts the float32 rows, a copy);
    ``cv_folds`` k >= 2: the k fold copies of the training rows, trained in lockstep;
    ``copied_rows``: rows copied out of the file first (the report's learning-curve subsets).
    """
    n_x, n_out, hidden = layer_dims[0], layer_dims[-1], list(layer_dims[1:-1])
    n_params = sum(layer_dims[l] * (layer_dims[l - 1] + 1) for l in range(1, len(layer_dims)))
    # weights, gradients, optimizer moments, and the best weights kept for early stopping
    params = n_params * itemsize * (2 + MOMENTS.get(optimizer, 2) + int(early_stopping))

    def one_fit(m: int, m_val: int) -> int:
        b = m if batch_size == 0 else min(batch_size, m)
        gathered = n_x if b < m else 0  # a mini-batch is gathered (a copy); the full batch is X itself
        # forward caches (Z, A; with dropout the draws and the mask), backward's dZ and the dA of
        # every hidden layer (fit keeps one per layer, StepBuffers), and one temporary as wide as
        # the widest. For relu one array holds a layer's Z, A and dA (StepBuffers), beside a bool
        # array of its signs per hidden layer and one array of zeros as wide as the widest (plain
        # gradient descent's product updates add one more, StepBuffers.spare), so this overstates
        # relu networks by more than one array per hidden layer: the safe side of exit 3.
        backward = 2 * n_out + sum(hidden) + max(hidden, default=0)
        per_column = gathered + n_out + sum(hidden) * (2 + 2 * int(dropout)) + backward
        dev_pass = m_val * (2 * sum(hidden) + 3 * n_out)  # every epoch's forward pass over the whole dev split
        labels = m * n_out * itemsize + m * 16 + m_val * 16  # one-hot Y, y and the epoch's permutation; y_dev
        return (b * per_column + dev_pass) * itemsize + labels + params

    folds = cv_folds if cv_folds >= 2 else 0
    need = one_fit(m_train, m_dev)
    if folds:  # k copies of (k-1)/k of train plus 1/k held out, in the file's dtype, all alive together
        need += folds * (one_fit(m_train - m_train // folds, m_train // folds) + m_train * n_x * ROW_BYTES)
    rows = m_train + m_dev + copied_rows + (folds * m_train)
    if itemsize != ROW_BYTES:  # fit converts the float32 rows to the network's dtype
        need += rows * n_x * itemsize
    need += copied_rows * n_x * ROW_BYTES
    columns = min(m_train, max(1, PREDICT_BYTES // (itemsize * max(layer_dims[1:]))))
    need += columns * 2 * sum(layer_dims[1:]) * itemsize  # a prediction chunk's activations
    return need + PROCESS_BYTES


def check_working_set(ws: WorkingSet, what: str, hint: str, freed: int = 0) -> None:
    """DataError (exit 3) if the working set exceeds the memory available now, with the estimate.

    ``freed``: bytes this process holds now and releases before that working set is needed.
    """
    available = available_bytes() + freed
    if ws.total > available:
        raise DataError(
            f"{what} needs about {gib(ws.total)} in memory ({ws.describe()}) but {gib(available)} are available; {hint}"
        )


# --- the stages' working sets, from params and the data's sizes ------------------------------------


def split_set(m: int, n_x: int) -> WorkingSet:
    """The split stage: the prepared rows, read in a seeded order, and a content hash, key and group per row."""
    return WorkingSet(m * n_x * ROW_BYTES, PROCESS_BYTES + m * 600)  # measured: ~550 B a row at 400,000


def _settings(params: Params, widest: bool) -> tuple[tuple[int, ...], int, str, bool]:
    """(hidden layers, batch size, optimizer, dropout) of the network ``params`` trains, or with
    ``widest`` of the largest trial its search space allows."""
    train, space = params.train, params.tune.space
    if not widest:
        return params.model.hidden_layers, train.batch_size, train.optimizer, train.keep_prob < 1
    hidden = (space.n_units.high,) * space.n_layers.high
    batches = space.batch_size or (train.batch_size,)
    batch = 0 if 0 in batches else max(batches)
    optimizers = space.optimizer or (train.optimizer,)
    optimizer = max(optimizers, key=lambda o: MOMENTS.get(o, 2))
    return hidden, batch, optimizer, space.keep_prob.low < 1


def fit_set(
    params: Params,
    n_x: int,
    n_classes: int,
    m_train: int,
    m_dev: int,
    *,
    processes: int = 1,
    widest: bool = False,
    cv_folds: int = 0,
    copied_rows: int = 0,
) -> WorkingSet:
    """``processes`` training processes of ``params``'s network (``widest``: a study's largest trial) on
    the mapped train and dev rows."""
    hidden, batch, optimizer, dropout = _settings(params, widest)
    dims = (n_x, *hidden, 1 if n_classes == 2 else n_classes)
    per = training_bytes(
        dims,
        m_train,
        m_dev,
        batch,
        itemsize=8 if params.model.dtype == "float64" else 4,
        optimizer=optimizer,
        dropout=dropout,
        early_stopping=params.train.patience > 0,
        cv_folds=cv_folds,
        copied_rows=copied_rows,
    )
    return WorkingSet((m_train + m_dev) * n_x * ROW_BYTES, per, processes)


def tune_set(params: Params, n_x: int, n_classes: int, m_train: int, m_dev: int) -> WorkingSet:
    """The tune stage: ``tune.n_workers`` workers, each training the space's largest trial, and with more
    than one the launcher that starts them (one worker runs in the launcher's process)."""
    workers = params.tune.n_workers
    ws = fit_set(params, n_x, n_classes, m_train, m_dev, processes=workers, widest=True, cv_folds=params.tune.cv_folds)
    return WorkingSet(ws.mapped, ws.per_process, workers, launcher=PROCESS_BYTES if workers > 1 else 0)


def report_set(
    final: Params, params: Params, n_x: int, n_classes: int, m_train: int, m_dev: int, workers: int
) -> WorkingSet:
    """The report stage: the learning curve (``final``'s network on copies of the smaller fractions of
    train; fraction 1 reads the file) or, after it, the stability fits in ``workers`` processes."""
    below = [f for f in params.report.learning_curve_fractions if f < 1]
    copied = round(max(below) * m_train) if below else 0
    curve = fit_set(final, n_x, n_classes, m_train, m_dev, copied_rows=copied)
    if params.report.stability_seeds < 2 or workers < 1:
        return curve
    stability = fit_set(params, n_x, n_classes, m_train, m_dev, processes=workers, widest=True)
    if workers > 1:  # the report's own process waits for the pool's workers
        stability = WorkingSet(stability.mapped, stability.per_process, workers, launcher=PROCESS_BYTES)
    return max(curve, stability, key=lambda ws: ws.total)


def stability_workers(params: Params, cores: int) -> int:
    """The processes the stability check runs its fits in at most (``report.seeds.run_all``); 0: none."""
    if params.report.stability_seeds < 2:
        return 0
    jobs = params.report.stability_top_k * params.report.stability_seeds
    return min(cores, jobs) if min(cores, jobs) >= 2 else 1


def largest_m(params: Params, n_x: int, n_classes: int, available: int, cores: int) -> int:
    """The most examples of ``n_x`` features whose every stage fits in ``available`` bytes under ``params``
    (split fractions, the network, the study's space and workers, the report's settings)."""

    def fits(m: int) -> bool:
        s = params.split
        m_dev = round(m * s.dev)
        m_train = m - round(m * s.test) - m_dev
        m_train -= round(m_train * s.train_dev)
        sets = [
            split_set(m, n_x),
            tune_set(params, n_x, n_classes, m_train, m_dev),
            fit_set(params, n_x, n_classes, m_train, m_dev),
            report_set(params, params, n_x, n_classes, m_train, m_dev, stability_workers(params, cores)),
        ]
        return max(ws.total for ws in sets) <= available

    low, high = 0, 1
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:  # fits(low), not fits(high)
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low
