"""How many BLAS threads a training run should use, and a context manager that sets them.

Measured on the project machine (2 cores, float32, docs/benchmarks.md): a second BLAS thread
gains nothing below about 2 million multiply-adds per step (the digits network at batch 64 or
256), 1.2-1.3x around 5-11 million (digits at full batch) and 1.4-1.8x from about 20 million
(wider layers, the wide and course-cat networks). The small gains are fragile: steps of a
millisecond lose the second thread's wake-ups to any background process, and full-batch digits
measured 0.7 to 1.7 ms per step at 2 threads against a steady 0.85 ms at 1. So all cores are
used only from 20 million on. When several trials run side by side, each worker must use 1
thread whatever its size, or the threads oversubscribe the cores and slow down 2-3x; and on a
machine that other work keeps busy a second thread waits for a core and ran 2x to 28x slower than
one (a 12288-feature photo set, under load). So the choice divides the cores among the workers and
leaves out the cores other processes used lately (``cores_busy_elsewhere``, from /proc/stat).
``train.blas_threads`` in params.yaml (and ``sweep --threads``) overrides it; every trial and the
final model record the number they used (the ``blas_threads`` tag of their MLflow run).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

# Forward multiply-adds per step (batch x sum of fan_in x fan_out) from which all cores are used;
# measured with bench/bench_core.py (docs/benchmarks.md, "BLAS threads").
PARALLEL_MIN_MACS = 20_000_000


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def blas_threads_for(
    layer_dims: Sequence[int],
    batch_size: int,
    cores: int | None = None,
    *,
    workers: int = 1,
    busy_elsewhere: float | None = 0.0,
) -> int:
    """1 thread for small networks or batches; for large ones, the cores this process can have.

    ``layer_dims`` is ``(n_x, n_1, ..., n_out)``; ``batch_size`` is the examples per step (for
    full batch, ``batch_size == 0``, pass the training set size). ``cores`` defaults to the CPUs
    this process may use; they are shared among ``workers`` training processes, and the cores
    other processes keep busy (``busy_elsewhere``; None: measure them now) are not free.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 examples per step (full batch: pass m), got {batch_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    macs = batch_size * sum(a * b for a, b in itertools.pairwise(layer_dims))
    if macs < PARALLEL_MIN_MACS:
        return 1
    cores = cores or available_cpus()
    if busy_elsewhere is None:
        busy_elsewhere = cores_busy_elsewhere()
    # half a core of slack: short bursts of other processes (a shell, a storage round trip) are not load
    free = min(cores / workers, cores - busy_elsewhere + 0.5)
    return max(1, min(cores, int(free)))


def choose_blas_threads(
    override: int | None, layer_dims: Sequence[int], batch_size: int, *, m: int | None = None, workers: int = 1
) -> int:
    """``override`` (train.blas_threads, sweep --threads) when set, else ``blas_threads_for`` measured now.

    With ``m`` (the training examples), ``batch_size`` is train.batch_size as fit reads it: 0 or
    more than ``m`` is full batch.
    """
    if override is not None:
        if override < 1:
            raise ValueError(f"BLAS threads must be >= 1, got {override}")
        return override
    if m is not None:
        batch_size = min(batch_size or m, m)
    return blas_threads_for(layer_dims, batch_size, workers=workers, busy_elsewhere=None)


_last_sample: tuple[float, float, float] | None = None  # (monotonic s, machine busy CPU s, own CPU s)


def _sample() -> tuple[float, float, float] | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None  # not Linux: nothing to go by
    # user nice system idle iowait irq softirq steal (guest time, after them, is counted in user
    # already): all but idle and iowait are busy
    busy = sum(fields[:8]) - fields[3] - fields[4]
    own = os.times()
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def cores_busy_elsewhere(first_window: float = 0.05) -> float:
    """The cores other processes used since the last call (over ``first_window`` s at the first).

    Read from /proc/stat, less this process's own CPU time; 0.0 where /proc/stat is not there. A
    few microseconds between trials; only the first call waits.
    """
    global _last_sample
    before = _last_sample or _sample()
    if before is None:
        return 0.0
    if _last_sample is None or time.monotonic() - before[0] < 0.01:
        time.sleep(first_window)
    now = _sample()
    if now is None:
        return 0.0
    _last_sample = now
    seconds = now[0] - before[0]
    return max(0.0, ((now[1] - before[1]) - (now[2] - before[2])) / seconds)


@contextmanager
def limit_blas_threads(n: int) -> Iterator[None]:
    """Limit every BLAS library loaded in this process to ``n`` threads inside the block."""
    if n < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    with threadpool_limits(limits=n, user_api="blas"):
        yield
