"""Output activations and losses, each with the derivative the backward pass starts from.

Every loss is the mean over the batch of a per-sample loss, so its `delta` (dLoss/dz2) carries a
factor 1/B and the learning rate does not have to change with the batch size.

Saturation guard: saturated units must not produce subnormal floats (below 1.2e-38), which the
CPU handles 10-100x slower; a run at a high learning rate would then seem to hang. The sigmoid is
computed as (1 + tanh(z/2)) / 2, which is exact algebra but rounds to exactly 0 or 1 once |z| > ~17
instead of creeping through the subnormal range, and the softmax clips its shifted logits at
-SATURATION = -30 (probabilities below 1e-13 change by less than 1e-13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SATURATION = 30.0


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """In place: z <- 1 / (1 + exp(-z)), computed as (1 + tanh(z / 2)) / 2 (see the module note)."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def softmax_(z: np.ndarray) -> np.ndarray:
    """In place, row-wise: z <- exp(z - max) / sum(exp(z - max)); shifting by the max avoids overflow."""
    z -= z.max(axis=1, keepdims=True)
    np.maximum(z, -SATURATION, out=z)    # exp(-30) ~ 1e-13: keeps every probability a normal float
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


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
    output_: Callable[[np.ndarray], np.ndarray]                           # in place on z2
    samples: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]   # (a2, labels, out) -> loss per sample
    delta: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]     # (a2, labels, out) -> dLoss/dz2

    def value(self, a2: np.ndarray, labels: np.ndarray) -> float:
        """The mean loss over the batch."""
        return float(self.samples(a2, labels, np.empty(len(labels), a2.dtype)).mean(dtype=np.float64))


LOSSES: dict[str, Loss] = {
    "cross-entropy": Loss("cross-entropy", softmax_, cross_entropy_samples, cross_entropy_delta),
    "mse": Loss("mse", sigmoid_, mse_samples, mse_delta),
}
