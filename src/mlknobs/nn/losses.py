"""Output activations and losses, each with the derivative the backward pass starts from.

Every loss is the mean over the batch of a per-sample loss, so its `delta` (dLoss/dz2) carries a
factor 1/B and the learning rate does not have to change with the batch size.

Each entry of LOSSES brings its output activation along, because the loss's derivative depends on
it (softmax and cross-entropy cancel into "output - target"; the squared error keeps sigmoid'(z2)).
The activations themselves and the saturation guard live in activations.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlknobs.config import LOSS_NAMES
from mlknobs.nn.activations import sigmoid_, sigmoid_slope, softmax_


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


def probabilities_as_they_are(p: np.ndarray) -> np.ndarray:
    """Softmax outputs (n, 10) already are probabilities that sum to 1 per row."""
    return p


def normalised_scores_(a: np.ndarray) -> np.ndarray:
    """In place: ten independent sigmoid scores (n, 10) divided by their sum, to read as probabilities.

    The argmax does not change; the tiny floor keeps an all-zero row (every sigmoid saturated off) finite.
    """
    a /= np.maximum(a.sum(axis=1, keepdims=True), np.finfo(a.dtype).tiny)
    return a


@dataclass(frozen=True)
class Loss:
    name: str
    output_activation: str                                                # as model files record it
    output_: Callable[[np.ndarray], np.ndarray]                           # in place on z2
    output_slope: Callable[[np.ndarray, np.ndarray], np.ndarray] | None   # (a2, out) -> da2/dz2; None: never formed
    samples: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]   # (a2, labels, out) -> loss per sample
    delta: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]     # (a2, labels, out) -> dLoss/dz2
    probabilities_: Callable[[np.ndarray], np.ndarray]                    # in place: outputs (n, 10) -> probabilities

    def value(self, a2: np.ndarray, labels: np.ndarray) -> float:
        """The mean loss over the batch."""
        return float(self.samples(a2, labels, np.empty(len(labels), a2.dtype)).mean(dtype=np.float64))


# The softmax has no output_slope: its Jacobian is never formed, it cancels against the
# cross-entropy's 1/p (see cross_entropy_delta).
LOSSES: dict[str, Loss] = {
    "cross-entropy": Loss("cross-entropy", "softmax", softmax_, None, cross_entropy_samples, cross_entropy_delta,
                          probabilities_as_they_are),
    "mse": Loss("mse", "sigmoid", sigmoid_, sigmoid_slope, mse_samples, mse_delta, normalised_scores_),
}
assert tuple(LOSSES) == LOSS_NAMES, "config.LOSS_NAMES must list exactly the registered losses"
