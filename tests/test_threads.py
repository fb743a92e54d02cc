"""BLAS thread choice per network size, and the context manager that applies it."""

import os
import subprocess
import sys
import time

import numpy  # noqa: F401  (loads OpenBLAS, so that threadpoolctl has a BLAS pool to report)
import pytest
from threadpoolctl import threadpool_info

from pipeline.threads import (
    available_cpus,
    blas_threads_for,
    choose_blas_threads,
    cores_busy_elsewhere,
    limit_blas_threads,
)

# (layer_dims, examples per step)
DIGITS = ((64, 64, 32, 1), 1797)  # full batch on the embedded digits data
WIDE = ((3072, 512, 256, 1), 256)
COURSE_CAT = ((12288, 20, 7, 5, 1), 2000)


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_small_networks_get_one_thread_and_large_ones_all_cores() -> None:
    assert blas_threads_for(*DIGITS, cores=2) == 1
    assert blas_threads_for((64, 64, 32, 1), 64, cores=2) == 1
    assert blas_threads_for((64, 16, 10), 64, cores=16) == 1
    assert blas_threads_for((64, 256, 256, 1), 256, cores=2) == 2  # 21 million multiply-adds
    assert blas_threads_for(*WIDE, cores=2) == 2
    assert blas_threads_for(*COURSE_CAT, cores=4) == 4
    assert blas_threads_for(*WIDE, cores=1) == 1  # never more threads than cores


def test_default_cores_are_the_cpus_this_process_may_use() -> None:
    assert blas_threads_for(*DIGITS) == 1
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert blas_threads_for(*WIDE) == available


def test_the_batch_size_counts_not_just_the_layers() -> None:
    layers, _ = WIDE
    assert blas_threads_for(layers, 8, cores=2) == 1  # 14 million multiply-adds
    assert blas_threads_for(layers, 256, cores=2) == 2


@pytest.mark.parametrize("n", [1, 2])
def test_limit_blas_threads_sets_the_pools_inside_and_restores_them_after(n: int) -> None:
    before = blas_threads()
    assert before, "no BLAS library loaded"
    with limit_blas_threads(n):
        assert blas_threads() == [n] * len(before)
    assert blas_threads() == before


def test_limit_blas_threads_restores_the_pools_when_the_block_raises() -> None:
    before = blas_threads()
    with pytest.raises(KeyError), limit_blas_threads(1 if before[0] > 1 else 2):
        raise KeyError("boom")
    assert blas_threads() == before


def test_full_batch_must_be_given_as_the_training_set_size() -> None:
    with pytest.raises(ValueError, match="full batch: pass m"):
        blas_threads_for(DIGITS[0], 0)


def test_limit_blas_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match=">= 1"), limit_blas_threads(0):
        pass


def test_the_cores_are_shared_among_the_workers() -> None:
    assert blas_threads_for(*WIDE, cores=2, workers=2) == 1
    assert blas_threads_for(*WIDE, cores=8, workers=2) == 4
    assert blas_threads_for(*WIDE, cores=8, workers=3) == 2
    assert blas_threads_for(*DIGITS, cores=8, workers=1) == 1  # small stays small
    with pytest.raises(ValueError, match="workers"):
        blas_threads_for(*WIDE, cores=2, workers=0)


def test_cores_other_processes_keep_busy_are_not_free() -> None:
    """Under load a second thread waits for a core: one thread is faster then (module docstring)."""
    assert blas_threads_for(*WIDE, cores=2, busy_elsewhere=0.2) == 2
    assert blas_threads_for(*WIDE, cores=2, busy_elsewhere=1.0) == 1
    assert blas_threads_for(*COURSE_CAT, cores=8, busy_elsewhere=3.0) == 5
    assert blas_threads_for(*WIDE, cores=2, busy_elsewhere=5.0) == 1  # never fewer than one


def test_an_override_wins_whatever_the_size() -> None:
    assert choose_blas_threads(3, *DIGITS) == 3
    assert choose_blas_threads(1, *WIDE) == 1
    assert choose_blas_threads(None, *DIGITS) == 1
    with pytest.raises(ValueError, match=">= 1"):
        choose_blas_threads(0, *WIDE)


def test_busy_cores_elsewhere_are_measured_from_proc_stat() -> None:
    spin = "print('spinning', flush=True)\nwhile True: pass"  # until killed
    spinner = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout.readline() == "spinning\n"  # it runs: the window starts now
        cores_busy_elsewhere()
        time.sleep(0.3)  # the measurement window itself, not a wait for an event
        busy = cores_busy_elsewhere()
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.25 < busy <= available_cpus() + 0.5  # the spinner kept about one core busy; this process idled
