"""numpy's own BLAS gemm with a beta: C <- alpha A B.T + beta C in place, which matmul cannot do.

Plain gradient descent updates a large weight matrix inside the product that makes its gradient
(``optim.product_update``): gemm's beta scales W while the product is added into it, so the
gradient is never written and read back. numpy's matmul has no beta. scipy.linalg.blas has one,
but it calls scipy's own OpenBLAS, a second library with its own thread pool; alternating with
numpy's on 2 cores the two pools' threads wait on each other, and the wide benchmark network's
step at 2 threads went from 1.20x the products-only floor to 1.39x (1.06x through this module;
``bench_core.py --workloads wide --impls floor,core``, docs/benchmarks.md). So this calls the
library numpy's matmul calls, with the thread pool pipeline.threads limits.

It is found through numpy's extension module (dlsym searches the libraries a module was linked
against) by the names numpy's wheels give it: scipy-openblas with 64-bit integers, as
``scipy_cblas_sgemm64_`` and ``scipy_cblas_dgemm64_``. Where numpy was built otherwise (another
BLAS, another platform's loader), ``gemm_for`` returns None and fit updates as before.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import numpy as np

# CBLAS's enum values (cblas.h)
COLUMN_MAJOR, NO_TRANS, TRANS = 102, 111, 112
SYMBOLS = {
    np.dtype(np.float32): ("scipy_cblas_sgemm64_", ctypes.c_float),
    np.dtype(np.float64): ("scipy_cblas_dgemm64_", ctypes.c_double),
}

Gemm = Callable[[np.ndarray, float, np.ndarray, np.ndarray, float], None]


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(np._core._multiarray_umath.__file__)  # already loaded: the same library, the same pool
    except (OSError, AttributeError):
        return None


@functools.cache
def gemm_for(dtype: np.dtype | str) -> Gemm | None:
    """``gemm(C, alpha, A, B, beta)`` for arrays of ``dtype``, or None where numpy's BLAS is not reachable.

    C is (p, q), A is (p, k) and B is (q, k), all column-major (Fortran order; column slices of
    such arrays are too). ctypes releases the GIL for the call, as numpy does around matmul.
    """
    dtype = np.dtype(dtype)
    library = _library()
    if dtype not in SYMBOLS or library is None:
        return None
    name, scalar = SYMBOLS[dtype]
    try:
        function = getattr(library, name)
    except AttributeError:
        return None
    enum, i64, pointer = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    function.restype = None
    # order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    function.argtypes = [enum, enum, enum, i64, i64, i64, scalar, pointer, i64, pointer, i64, scalar, pointer, i64]

    def gemm(C: np.ndarray, alpha: float, A: np.ndarray, B: np.ndarray, beta: float) -> None:
        (p, q), k = C.shape, A.shape[1]
        if A.shape != (p, k) or B.shape != (q, k):
            raise ValueError(f"gemm shapes do not match: C {C.shape}, A {A.shape}, B {B.shape}")
        if not C.flags.writeable:
            raise ValueError("gemm writes C in place: it must be writeable")
        # a wrong stride would read the wrong numbers, not fail: check every matrix's
        a, b, c = (A.ctypes.data, lead(A)), (B.ctypes.data, lead(B)), (C.ctypes.data, lead(C))
        function(COLUMN_MAJOR, NO_TRANS, TRANS, p, q, k, alpha, *a, *b, beta, *c)

    def lead(X: np.ndarray) -> int:
        """The leading dimension of a column-major matrix: elements from one column to the next."""
        rows, columns = X.shape
        step, rest = divmod(X.strides[1], dtype.itemsize)
        contiguous = rows <= 1 or X.strides[0] == dtype.itemsize
        if X.dtype != dtype or not contiguous or (columns > 1 and (rest or step < rows)):
            raise ValueError(f"gemm needs column-major {dtype} matrices, not {X.dtype} {X.shape} strides {X.strides}")
        return step if columns > 1 else max(1, rows)

    return gemm
