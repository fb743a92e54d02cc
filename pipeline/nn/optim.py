"""Parameter updates: plain gradient descent, momentum and Adam, as a name-to-class table.

``step`` takes the gradients of the data term, ``l2_lambda`` and the batch size ``m``; the L2
gradient (``network.l2_gradient_scale``, where the rule and its convention are written) is added
here rather than in ``backward``, so that plain gradient descent can apply it as a decay of W
without another pass over a temporary. Every optimizer updates the weight arrays in place and may
overwrite the gradients it is given (a step consumes them), so a step allocates no weight-sized
temporaries.

Each update is elementwise, and large arrays are updated a block at a time (``blocks``): every
operation of the update runs on one block while it sits in the CPU's cache, instead of each
operation streaming the whole array through memory. The numbers are the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.nn import blas
from pipeline.nn.network import Weights, l2_gradient_scale

# Elements per block: 256 KB of float32 per array, so that Adam's four arrays and its temporaries
# stay in a core's L2 cache. On the wide benchmark network (1.7 million weights) Adam epochs are
# 18 % shorter by blocks (bench_core --workloads wide --optimizer adam, docs/benchmarks.md); arrays
# up to one block (the digits networks) are updated whole.
BLOCK = 65536


def blocks(*arrays: np.ndarray) -> Sequence[tuple[np.ndarray, ...]]:
    """The same consecutive pieces of equally shaped arrays: the arrays themselves when they are small.

    Pieces are views, so updating them in place updates the arrays; the arrays must therefore be
    contiguous (``fit``'s are: network.grouped's flat arrays and their like).
    """
    if arrays[0].size <= BLOCK:
        return (arrays,)
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError("a blocked update needs contiguous arrays (its pieces are views)")
    flat = [a.reshape(-1) for a in arrays]
    return [tuple(f[i : i + BLOCK] for f in flat) for i in range(0, flat[0].size, BLOCK)]


# Plain gradient descent updates a weight matrix of at least this many elements inside the product
# that makes its gradient (``product_update``). Smaller ones cost the two-pass update microseconds
# of elementwise calls; at this size (bench_core's mid-b64: W2 is 256 x 256) the product update
# already shortened epochs by 1-4 % at 1 thread and 9-10 % at 2 (docs/benchmarks.md).
PRODUCT_UPDATE_MIN_SIZE = 65536


def product_update_available(dtype: np.dtype | str) -> bool:
    """Whether ``product_update`` can run here (numpy's own BLAS is reachable: nn.blas)."""
    return blas.gemm_for(dtype) is not None


def product_update(W: np.ndarray, dZ: np.ndarray, A_prev: np.ndarray, learning_rate: float, scale: float) -> None:
    """W <- (1 - lr c) W - lr dZ A_prev.T in place: one BLAS gemm call, beta = 1 - lr c.

    ``GradientDescent.step``'s update with dW = dZ A_prev.T (``backward``'s product, dZ already
    divided by m) and c = ``scale`` (l2_gradient_scale), without writing dW and reading it back:
    the product adds into W as it goes. Only the rounding differs from the step's (one fused sum
    instead of three roundings). W is row-major, so W.T is the column-major matrix gemm writes;
    A_prev and dZ are column-major already (the activations' layout).
    """
    gemm = blas.gemm_for(W.dtype)
    assert gemm is not None, "product_update_available said no"
    gemm(W.T, -learning_rate, A_prev, dZ, 1 - learning_rate * scale)


class GradientDescent:
    updates_in_product = True  # fit may update its large weight matrices with product_update

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        pass

    def step(self, weights: Weights, grads: Weights, learning_rate: float, l2_lambda: float = 0.0, m: int = 1) -> None:
        for name, W in weights.items():
            scale = l2_gradient_scale(name, l2_lambda, m)
            for W_, g in blocks(W, grads["d" + name]):
                if scale:
                    W_ *= 1 - learning_rate * scale  # W - lr (g + c W) = (1 - lr c) W - lr g
                g *= learning_rate  # in place: W -= lr * g would allocate a temporary as large as W
                W_ -= g


class Momentum:
    """v = beta v + (1 - beta) dW;  W -= lr v  (the course's exponentially weighted average)."""

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta = beta1
        self.v = {name: np.zeros_like(W) for name, W in weights.items()}

    def step(self, weights: Weights, grads: Weights, learning_rate: float, l2_lambda: float = 0.0, m: int = 1) -> None:
        for name, W in weights.items():
            scale = l2_gradient_scale(name, l2_lambda, m)
            for W_, g, v in blocks(W, grads["d" + name], self.v[name]):
                if scale:
                    g += scale * W_
                v *= self.beta
                g *= 1 - self.beta
                v += g
                W_ -= learning_rate * v


class Adam:
    """Momentum and RMSprop with bias correction: W -= lr * v_hat / (sqrt(s_hat) + epsilon)."""

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta1, self.beta2, self.epsilon, self.t = beta1, beta2, epsilon, 0
        self.v = {name: np.zeros_like(W) for name, W in weights.items()}
        self.s = {name: np.zeros_like(W) for name, W in weights.items()}

    def step(self, weights: Weights, grads: Weights, learning_rate: float, l2_lambda: float = 0.0, m: int = 1) -> None:
        self.t += 1
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        for name, W in weights.items():
            scale = l2_gradient_scale(name, l2_lambda, m)
            for W_, g, v, s in blocks(W, grads["d" + name], self.v[name], self.s[name]):
                if scale:
                    g += scale * W_
                v *= self.beta1
                v += (1 - self.beta1) * g
                g *= g  # g is consumed: reuse it for g^2
                g *= 1 - self.beta2
                s *= self.beta2
                s += g
                denominator = np.sqrt(s / correction2)
                denominator += self.epsilon
                W_ -= (learning_rate / correction1) * v / denominator


OPTIMIZERS = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
