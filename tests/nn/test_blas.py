"""numpy's own BLAS gemm with a beta: the numbers of numpy's products, in place, on checked layouts."""

import numpy as np
import pytest

from pipeline.nn.blas import gemm_for


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpys_wheel_blas_is_reachable(dtype: str) -> None:
    # CI installs numpy's wheels, whose scipy-openblas this calls; if it were not found here, fit
    # would silently fall back to the two-pass update and its product-update tests would test nothing
    assert gemm_for(dtype) is not None


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
def test_gemm_adds_the_product_into_a_row_major_matrix_in_place(dtype: str, rtol: float) -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 40)).astype(dtype)  # row-major (n_l, n_prev), as fit's weights
    dZ = np.asfortranarray(rng.standard_normal((7, 30)).astype(dtype))
    A = np.asfortranarray(rng.standard_normal((40, 30)).astype(dtype))
    k = 23  # the first columns of column-major arrays: a partial last batch
    expected = 0.9 * W.astype(np.float64) - 0.5 * (dZ[:, :k].astype(np.float64) @ A[:, :k].T.astype(np.float64))
    before = W.ctypes.data
    gemm_for(dtype)(W.T, -0.5, A[:, :k], dZ[:, :k], 0.9)
    assert W.ctypes.data == before and W.dtype == dtype
    np.testing.assert_allclose(W, expected, rtol=rtol, atol=rtol)


def test_gemm_refuses_layouts_it_would_misread() -> None:
    gemm = gemm_for("float32")
    C = np.zeros((4, 3), np.float32, order="F")
    A = np.ones((4, 5), np.float32, order="F")
    B = np.ones((3, 5), np.float32, order="F")
    gemm(C, 1.0, A, B, 0.0)
    assert (C == 5).all()
    with pytest.raises(ValueError, match="column-major"):
        gemm(C, 1.0, np.ones((4, 5), np.float32), B, 0.0)  # row-major A
    with pytest.raises(ValueError, match="column-major"):
        gemm(C, 1.0, A.astype(np.float64), B, 0.0)  # another dtype
    with pytest.raises(ValueError, match="shapes"):
        gemm(C, 1.0, A, np.ones((3, 4), np.float32, order="F"), 0.0)
    C.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        gemm(C, 1.0, A, B, 0.0)
    assert gemm_for("int64") is None
