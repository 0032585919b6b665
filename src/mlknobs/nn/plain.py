"""One step of learning, written plainly: forward, loss, backward, update. Read this file first.

The network is 784 inputs -> H sigmoid hidden units -> 10 outputs. Its knobs are two weight
matrices and two bias vectors (Params: w1 (784, H), b1 (H,), w2 (H, 10), b2 (10,)). A batch is B
images as rows, x (B, 784), with integer labels (B,). One step of gradient descent:

    forward    z1 = x @ w1 + b1,  a1 = sigmoid(z1),  z2 = a1 @ w2 + b2,  a2 = output(z2)
    loss       how far a2 is from the one-hot target y, averaged over the batch
    backward   the chain rule from dLoss/dz2 back to every knob: dw2, db2, dw1, db1
    update     every knob moves against its slope: w = w - learning_rate * dw

Every line below is one equation with its shapes, plain NumPy, no buffers, no lookup tables. The
fast `Network` (nn/model.py) computes the same step with preallocated buffers; the tests in
tests/nn/test_plain.py hold the two together, for both losses, with and without dropout. `mlknobs
explain` uses this module to show one step with real numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlknobs.nn.model import PARAM_NAMES, Params


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z): squashes any number into (0, 1); its slope is sigmoid(z) (1 - sigmoid(z))."""
    with np.errstate(over="ignore"):     # e^-z overflows to inf for z < -709: 1 / inf is the right 0
        return 1 / (1 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    """e^z / sum(e^z) per row: ten positive numbers that sum to 1. Subtracting the row's max first
    changes nothing mathematically and keeps e^z from overflowing."""
    e = np.exp(z - z.max(axis=1, keepdims=True))    # (B, 10)
    return e / e.sum(axis=1, keepdims=True)         # (B, 10)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """The target y (B, 10): 1 at each row's label, 0 elsewhere."""
    y = np.zeros((len(labels), 10))
    y[np.arange(len(labels)), labels] = 1
    return y


@dataclass
class Cache:
    """What the forward pass keeps because the backward pass needs it."""

    x: np.ndarray              # (B, 784) inputs
    a1: np.ndarray             # (B, H) hidden activations
    keep: np.ndarray | None    # (B, H) dropout mask (0, or 1 / (1 - p)), or None
    h: np.ndarray              # (B, H) what the output layer sees: a1, or a1 * keep


def forward(p: Params, x: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, Cache]:
    """The output layer's input z2 (B, 10) for inputs x (B, 784), and the cache for backward."""
    z1 = x @ p.w1 + p.b1                      # (B, 784) @ (784, H) + (H,) -> (B, H)
    a1 = sigmoid(z1)                          # (B, H)
    h = a1 if keep is None else a1 * keep     # (B, H) dropout: a dropped unit outputs 0
    z2 = h @ p.w2 + p.b2                      # (B, H) @ (H, 10) + (10,) -> (B, 10)
    return z2, Cache(x=x, a1=a1, keep=keep, h=h)


def cross_entropy(z2: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Softmax outputs and the mean of -log(probability of the label): (loss, a2, dLoss/dz2)."""
    B = len(labels)
    a2 = softmax(z2)                                      # (B, 10) probabilities
    y = one_hot(labels)                                   # (B, 10)
    loss = -np.log(a2[np.arange(B), labels]).mean()       # scalar
    dz2 = (a2 - y) / B                                    # (B, 10) softmax and -log cancel: output - target
    return float(loss), a2, dz2


def squared_error(z2: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Sigmoid outputs and half the squared error summed over the ten outputs (Nielsen's cost),
    averaged over the batch: (loss, a2, dLoss/dz2)."""
    B = len(labels)
    a2 = sigmoid(z2)                                      # (B, 10) ten independent scores
    y = one_hot(labels)                                   # (B, 10)
    loss = (0.5 * ((a2 - y) ** 2).sum(axis=1)).mean()     # scalar
    dz2 = (a2 - y) * a2 * (1 - a2) / B                    # (B, 10) dLoss/da2 * sigmoid'(z2)
    return float(loss), a2, dz2


# The two losses mlknobs trains with, by the names its settings use (config.LOSS_NAMES), and the
# same equations in words for one digit (B = 1), as `mlknobs explain` prints them.
LOSS_FUNCTIONS = {"cross-entropy": cross_entropy, "mse": squared_error}
LOSS_FORMULAS = {
    "cross-entropy": {"output": "a2 = softmax(z2) = e^z2[k] / sum_m e^z2[m]", "loss": "Loss = -log a2[label]",
                      "dz2": "dLoss/dz2[k] = a2[k] - y[k]"},
    "mse": {"output": "a2 = sigmoid(z2) = 1 / (1 + e^-z2[k])", "loss": "Loss = 1/2 * sum_k (a2[k] - y[k])^2",
            "dz2": "dLoss/dz2[k] = (a2[k] - y[k]) * a2[k] * (1 - a2[k])"},
}


def backward(p: Params, cache: Cache, dz2: np.ndarray) -> Params:
    """The slope of the loss for every knob, by the chain rule, given dLoss/dz2 (B, 10)."""
    dw2 = cache.h.T @ dz2                                 # (H, B) @ (B, 10) -> (H, 10)
    db2 = dz2.sum(axis=0)                                 # (10,)
    dh = dz2 @ p.w2.T                                     # (B, 10) @ (10, H) -> (B, H)
    da1 = dh if cache.keep is None else dh * cache.keep   # (B, H) a dropped unit passes nothing back
    dz1 = da1 * cache.a1 * (1 - cache.a1)                 # (B, H) sigmoid'(z1) = a1 (1 - a1)
    dw1 = cache.x.T @ dz1                                 # (784, B) @ (B, H) -> (784, H)
    db1 = dz1.sum(axis=0)                                 # (H,)
    return Params(w1=dw1, b1=db1, w2=dw2, b2=db2)


def update(p: Params, grads: Params, learning_rate: float) -> Params:
    """Plain gradient descent: every knob moves a small step against its slope."""
    return Params(**{name: getattr(p, name) - learning_rate * getattr(grads, name) for name in PARAM_NAMES})


def step(p: Params, x: np.ndarray, labels: np.ndarray, learning_rate: float, loss: str = "cross-entropy",
         keep: np.ndarray | None = None) -> tuple[Params, float, Params]:
    """One step of learning on one batch: (the new knobs, the loss before the step, the slopes)."""
    z2, cache = forward(p, x, keep)
    loss_value, _, dz2 = LOSS_FUNCTIONS[loss](z2, labels)
    grads = backward(p, cache, dz2)
    return update(p, grads, learning_rate), loss_value, grads
