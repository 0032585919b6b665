"""Activations, in place, each with its derivative written in terms of its own output.

The derivative takes the activation's output a (what the forward pass keeps) rather than its
input z: for the sigmoid, sigmoid'(z) = a (1 - a), so the backward pass needs no second exp.
The hidden layer is always the sigmoid (HIDDEN_ACTIVATION, as model files record it); the output
activation belongs to the loss (losses.LOSSES), because the loss's derivative depends on it.

Saturation guard: saturated units must not produce subnormal floats (below 1.2e-38), which the
CPU handles 10-100x slower; a run at a high learning rate would then seem to hang. The sigmoid is
computed as (1 + tanh(z/2)) / 2, which is exact algebra but rounds to exactly 0 or 1 once |z| > ~17
instead of creeping through the subnormal range, and the softmax clips its shifted logits at
-SATURATION = -30 (probabilities below 1e-13 change by less than 1e-13).
"""

from __future__ import annotations

import numpy as np

SATURATION = 30.0


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """In place: z <- 1 / (1 + exp(-z)), computed as (1 + tanh(z / 2)) / 2 (see the module note)."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def sigmoid_slope(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """sigmoid'(z) = a (1 - a), from the forward output a, into out (same shape)."""
    np.subtract(1, a, out=out)
    out *= a
    return out


def softmax_(z: np.ndarray) -> np.ndarray:
    """In place, row-wise: z <- exp(z - max) / sum(exp(z - max)); shifting by the max avoids overflow."""
    z -= z.max(axis=1, keepdims=True)
    np.maximum(z, -SATURATION, out=z)    # exp(-30) ~ 1e-13: keeps every probability a normal float
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


HIDDEN_ACTIVATION = "sigmoid"    # the network's hidden layer (model files record it)
