"""Output activations and losses, each with the derivative the backward pass starts from.

Every loss is the mean over the batch of a per-sample loss, so its `delta` (dLoss/dz2) carries a
factor 1/B and the learning rate does not have to change with the batch size.

The output activations and the saturation guard live in activations.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlknobs.config import LOSS_NAMES
from mlknobs.nn.activations import sigmoid_, softmax_


def _rows(labels: np.ndarray) -> np.ndarray:
    return np.arange(len(labels))


def cross_entropy_samples(p: np.ndarray, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-sample loss -log p[label], into out (n,)."""
    np.log(p[_rows(labels), labels], out=out)
    return np.negative(out, out=out)


def cross_entropy_delta(p: np.ndarray, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dLoss/dz2 = (p - y) / B.

    Softmax and cross-entropy were made for each other: d(-log p_y)/dz_k = p_k - [k == y], the
    softmax's Jacobian cancels against the log's 1/p, so the output error is just "output - target".
    """
    np.copyto(out, p)
    out[_rows(labels), labels] -= 1
    out /= len(labels)
    return out


def mse_samples(a: np.ndarray, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-sample loss 1/2 * sum_k (a_k - y_k)^2 with one-hot y (Nielsen's quadratic cost), into out (n,)."""
    err = a.copy()
    err[_rows(labels), labels] -= 1
    np.square(err, out=err)
    np.sum(err, axis=1, out=out)
    out *= 0.5
    return out


def mse_delta(a: np.ndarray, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dLoss/dz2 = (a - y) * sigmoid'(z2) / B, with sigmoid'(z2) = a (1 - a) from the forward output."""
    np.copyto(out, a)
    out[_rows(labels), labels] -= 1      # a - y
    out *= a
    out *= 1 - a                         # a small (B, 10) temporary: not worth a buffer
    out /= len(labels)
    return out


@dataclass(frozen=True)
class Loss:
    name: str
    output_activation: str                                                # its name in activations.py
    output_: Callable[[np.ndarray], np.ndarray]                           # in place on z2
    samples: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]   # (a2, labels, out) -> loss per sample
    delta: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]     # (a2, labels, out) -> dLoss/dz2

    def value(self, a2: np.ndarray, labels: np.ndarray) -> float:
        """The mean loss over the batch."""
        return float(self.samples(a2, labels, np.empty(len(labels), a2.dtype)).mean(dtype=np.float64))

    def probabilities_(self, a2: np.ndarray) -> np.ndarray:
        """In place: the outputs (n, 10) as probabilities that sum to 1 per row.

        Softmax outputs already are. Sigmoid outputs (mse) are ten independent scores: normalise
        them so that they read as probabilities (the argmax does not change).
        """
        if self.output_activation != "softmax":
            a2 /= np.maximum(a2.sum(axis=1, keepdims=True), np.finfo(a2.dtype).tiny)
        return a2


LOSSES: dict[str, Loss] = {
    "cross-entropy": Loss("cross-entropy", "softmax", softmax_, cross_entropy_samples, cross_entropy_delta),
    "mse": Loss("mse", "sigmoid", sigmoid_, mse_samples, mse_delta),
}
assert tuple(LOSSES) == LOSS_NAMES, "config.LOSS_NAMES must list exactly the registered losses"
