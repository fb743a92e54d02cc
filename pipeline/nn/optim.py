"""Parameter updates: plain gradient descent, momentum and Adam, as a name-to-class table.

``step`` takes the gradients of the data term, ``l2_lambda`` and the batch size ``m``; the L2
gradient (``network.l2_gradient_scale``, where the rule and its convention are written) is added
here rather than in ``backward``, so that plain gradient descent can apply it as a decay of W
without another pass over a temporary. Every optimizer updates the weight arrays in place and may
overwrite the gradients it is given (a step consumes them), so a step allocates no weight-sized
temporaries.
"""

from __future__ import annotations

import numpy as np

from pipeline.nn.network import Weights, l2_gradient_scale


class GradientDescent:
    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        pass

    def step(self, weights: Weights, grads: Weights, learning_rate: float, l2_lambda: float = 0.0, m: int = 1) -> None:
        for name, W in weights.items():
            g = grads["d" + name]
            if scale := l2_gradient_scale(name, l2_lambda, m):
                W *= 1 - learning_rate * scale  # W - lr (g + c W) = (1 - lr c) W - lr g
            g *= learning_rate  # in place: W -= lr * g would allocate a temporary as large as W
            W -= g


class Momentum:
    """v = beta v + (1 - beta) dW;  W -= lr v  (the course's exponentially weighted average)."""

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta = beta1
        self.v = {name: np.zeros_like(W) for name, W in weights.items()}

    def step(self, weights: Weights, grads: Weights, learning_rate: float, l2_lambda: float = 0.0, m: int = 1) -> None:
        for name, W in weights.items():
            g, v = grads["d" + name], self.v[name]
            if scale := l2_gradient_scale(name, l2_lambda, m):
                g += scale * W
            v *= self.beta
            g *= 1 - self.beta
            v += g
            W -= learning_rate * v


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
            g, v, s = grads["d" + name], self.v[name], self.s[name]
            if scale := l2_gradient_scale(name, l2_lambda, m):
                g += scale * W
            v *= self.beta1
            v += (1 - self.beta1) * g
            g *= g  # g is consumed: reuse it for g^2
            g *= 1 - self.beta2
            s *= self.beta2
            s += g
            denominator = np.sqrt(s / correction2)
            denominator += self.epsilon
            W -= (learning_rate / correction1) * v / denominator


OPTIMIZERS = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
