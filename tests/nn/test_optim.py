"""The optimizers' blocked updates: the same bytes as one update of the whole array."""

import numpy as np
import pytest

from pipeline.nn import optim
from pipeline.nn.optim import OPTIMIZERS, blocks


def run(optimizer: str, shapes: dict[str, tuple[int, ...]], steps: int = 3) -> dict[str, bytes]:
    rng = np.random.default_rng(4)
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    updater = OPTIMIZERS[optimizer](weights, 0.9, 0.999, 1e-8)
    for _ in range(steps):
        grads = {"d" + name: rng.standard_normal(W.shape).astype(np.float32) for name, W in weights.items()}
        updater.step(weights, grads, 0.01, l2_lambda=0.7, m=16)
    return {name: W.tobytes() for name, W in weights.items()}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_an_update_by_blocks_is_bit_for_bit_the_update_of_the_whole_array(optimizer, monkeypatch) -> None:
    shapes = {"W": (53, 11), "b": (17,)}  # 583 weights: blocks of 100 leave a partial last block
    whole = run(optimizer, shapes)
    monkeypatch.setattr(optim, "BLOCK", 100)
    by_blocks = run(optimizer, shapes)
    assert by_blocks == whole  # pieces that were copies, not views, would leave the weights where they were
    assert by_blocks != run(optimizer, shapes, steps=2)


def test_blocks_are_views_of_the_arrays_and_small_arrays_come_whole(monkeypatch) -> None:
    a, b = np.arange(10.0), np.zeros(10)
    assert blocks(a, b) == ((a, b),)
    monkeypatch.setattr(optim, "BLOCK", 4)
    pieces = blocks(a.reshape(2, 5), b.reshape(2, 5))
    assert [p[0].tolist() for p in pieces] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for x, y in pieces:
        y += x
    assert b.tolist() == a.tolist()
    with pytest.raises(ValueError, match="contiguous"):
        blocks(np.zeros((10, 10)).T)


@pytest.mark.parametrize("l2_lambda", [0.0, 0.7])
def test_the_product_update_is_gradient_descents_step_on_the_products_gradient(l2_lambda: float) -> None:
    rng = np.random.default_rng(5)
    W = rng.standard_normal((32, 300)).astype(np.float32)
    dZ = np.asfortranarray(rng.standard_normal((32, 64)).astype(np.float32) / 64)
    A = np.asfortranarray(rng.standard_normal((300, 64)).astype(np.float32))
    stepped, start = W.copy(), W.copy()
    gradient = dZ @ A.T
    optim.GradientDescent({}, 0.9, 0.999, 1e-8).step({"W": stepped}, {"dW": gradient}, 0.1, l2_lambda, m=64)
    optim.product_update(W, dZ, A, 0.1, optim.l2_gradient_scale("W", l2_lambda, 64))
    assert not np.array_equal(W, start)  # it moved, in place
    np.testing.assert_allclose(W, stepped, rtol=1e-5, atol=1e-6)  # the same step, up to the rounding
