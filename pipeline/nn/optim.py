"""Parameter updates: plain gradient descent, momentum and Adam, as a name-to-class table.

Every optimizer updates the weight arrays in place, so a step allocates nothing beyond the
gradients themselves.
"""

from __future__ import annotations

import numpy as np

from pipeline.nn.network import Weights


class GradientDescent:
    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        pass

    def step(self, weights: Weights, grads: Weights, learning_rate: float) -> None:
        for name, W in weights.items():
            W -= learning_rate * grads["d" + name]


class Momentum:
    """v = beta v + (1 - beta) dW;  W -= lr v  (the course's exponentially weighted average)."""

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta = beta1
        self.v = {name: np.zeros_like(W) for name, W in weights.items()}

    def step(self, weights: Weights, grads: Weights, learning_rate: float) -> None:
        for name, W in weights.items():
            v = self.v[name]
            v *= self.beta
            v += (1 - self.beta) * grads["d" + name]
            W -= learning_rate * v


class Adam:
    """Momentum and RMSprop with bias correction: W -= lr * v_hat / (sqrt(s_hat) + epsilon)."""

    def __init__(self, weights: Weights, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta1, self.beta2, self.epsilon, self.t = beta1, beta2, epsilon, 0
        self.v = {name: np.zeros_like(W) for name, W in weights.items()}
        self.s = {name: np.zeros_like(W) for name, W in weights.items()}

    def step(self, weights: Weights, grads: Weights, learning_rate: float) -> None:
        self.t += 1
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        for name, W in weights.items():
            g, v, s = grads["d" + name], self.v[name], self.s[name]
            v *= self.beta1
            v += (1 - self.beta1) * g
            s *= self.beta2
            s += (1 - self.beta2) * (g * g)
            denominator = np.sqrt(s / correction2)
            denominator += self.epsilon
            W -= (learning_rate / correction1) * v / denominator


OPTIMIZERS = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
