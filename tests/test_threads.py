"""BLAS thread choice per network size, and the context manager that applies it."""

import os

import numpy  # noqa: F401  (loads OpenBLAS, so that threadpoolctl has a BLAS pool to report)
import pytest
from threadpoolctl import threadpool_info

from pipeline.threads import blas_threads_for, limit_blas_threads

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
