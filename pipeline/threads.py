"""How many BLAS threads a training run should use, and a context manager that sets them.

Measured on the project machine (2 cores, float32, docs/benchmarks.md): a second BLAS thread
gains nothing below about 2 million multiply-adds per step (the digits network at batch 64 or
256), 1.2-1.3x around 5-11 million (digits at full batch) and 1.4-1.8x from about 20 million
(wider layers, the wide and course-cat networks). The small gains are fragile: steps of a
millisecond lose the second thread's wake-ups to any background process, and full-batch digits
measured 0.7 to 1.7 ms per step at 2 threads against a steady 0.85 ms at 1. So all cores are
used only from 20 million on. When several trials run side by side, each worker must use 1
thread whatever its size, or the threads oversubscribe the cores and slow down 2-3x.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

# Forward multiply-adds per step (batch x sum of fan_in x fan_out) from which all cores are used;
# measured with bench/bench_core.py (docs/benchmarks.md, "BLAS threads").
PARALLEL_MIN_MACS = 20_000_000


def blas_threads_for(layer_dims: Sequence[int], batch_size: int, cores: int | None = None) -> int:
    """1 thread for small networks or batches, all cores for large ones.

    ``layer_dims`` is ``(n_x, n_1, ..., n_out)``; ``batch_size`` is the examples per step (for
    full batch, ``batch_size == 0``, pass the training set size). ``cores`` defaults
    to the CPUs this process may use.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 examples per step (full batch: pass m), got {batch_size}")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    macs = batch_size * sum(a * b for a, b in itertools.pairwise(layer_dims))
    return max(1, cores) if macs >= PARALLEL_MIN_MACS else 1


@contextmanager
def limit_blas_threads(n: int) -> Iterator[None]:
    """Limit every BLAS library loaded in this process to ``n`` threads inside the block."""
    if n < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    with threadpool_limits(limits=n, user_api="blas"):
        yield
