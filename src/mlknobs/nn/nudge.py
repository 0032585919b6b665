"""Learning with just arithmetic: every knob's slope from two evaluated losses, no backward pass.

    slope of knob w = (L(w + h) - L(w - h)) / 2h      L: the batch's mean loss, in float64

This is how the tutorials introduce learning before any calculus: nudge one knob a tiny bit up and
down, evaluate the loss each time, and the difference says which way to turn it. It needs two
loss evaluations per knob (about 2 x 784 x H forward passes a step), so only small networks can
train this way; `train --gradients nudge` refuses a run whose epochs would take too long.

Evaluating many nudged losses at once: a nudge of w1[i, j] (or b1[j]) changes hidden unit j only,
so the nudged network's z2 is the base z2 plus that unit's change times its outgoing weights, and
the 785 nudged losses of unit j's incoming knobs are evaluated together as a (785, B, 10) array. A
nudge of w2[j, k] (or b2[k]) changes z2[:, k] only. Every slope is still the difference of two
losses evaluated with the knob moved, never a derivative formula: the chain rule appears nowhere.
"""

from __future__ import annotations

import numpy as np

from mlknobs.lesson_settings import DEFAULT_H
from mlknobs.nn.losses import Loss
from mlknobs.nn.model import OUTPUT_SIZE, Params

# Float64 central differences: truncation error ~ h^2, rounding error ~ 1e-16 / h; the lessons' h
# (1e-5) keeps both far below the slopes (they agree with backprop's to about 1e-8 relative;
# tests/nn/test_nudge.py).
NUDGE = DEFAULT_H
CHUNK_ELEMENTS = 1 << 21        # nudged outputs evaluated at once: (networks, B, 10) float64, 16 MB at most


def nudge_slopes(params: Params, loss: Loss, x: np.ndarray, labels: np.ndarray,
                 keep: np.ndarray | None = None, h: float = NUDGE, units: range | None = None) -> Params:
    """The slope of the batch's mean loss for every knob, each as (L(w + h) - L(w - h)) / 2h.

    x: the batch's inputs (B, 784); labels (B,); keep: the dropout mask (B, H) of this training
    pass, or None. Computed in float64 whatever the knobs' type. units: only these hidden units'
    incoming knobs (the others' slopes stay 0; for timing a partial step).
    """
    p = params.astype(np.float64)
    x = np.asarray(x, np.float64)                          # (B, 784)
    n, hidden = len(labels), p.hidden_size
    z1 = x @ p.w1 + p.b1                                   # (B, 784) @ (784, H) -> (B, H)
    a1 = 1 / (1 + np.exp(-z1))                             # (B, H)
    out_in = a1 if keep is None else a1 * keep             # (B, H) what the output layer sees
    z2 = out_in @ p.w2 + p.b2                              # (B, H) @ (H, 10) -> (B, 10)
    slopes = p.zeros_like()

    def mean_losses(z2_nudged: np.ndarray) -> np.ndarray:
        """The batch's mean loss for each of many nudged networks: z2 (..., B, 10) -> (...)."""
        lead = z2_nudged.shape[:-2]
        outputs = loss.output_(z2_nudged.reshape(-1, OUTPUT_SIZE).copy())          # (M * B, 10)
        per_sample = loss.samples(outputs, np.tile(labels, outputs.shape[0] // n), np.empty(len(outputs)))
        return per_sample.reshape(*lead, n).mean(axis=-1)

    # Incoming knobs of unit j: w1[:, j] and b1[j] nudge z1[:, j] by h * x[:, i] (by h for the bias).
    inputs = np.vstack([x.T, np.ones((1, n))])             # (785, B): row i is what w1[i, j] multiplies
    rows = max(1, CHUNK_ELEMENTS // (n * OUTPUT_SIZE))     # nudged networks per evaluation
    for j in units if units is not None else range(hidden):
        mask = 1.0 if keep is None else keep[:, j]         # a dropped unit's knobs do not change the loss
        incoming = np.empty(len(inputs))                   # (785,) the slopes of w1[:, j] and b1[j]
        for start in range(0, len(inputs), rows):
            nudged = inputs[start:start + rows]            # (R, B)
            loss_at = {}
            for sign in (+1, -1):
                a1_j = 1 / (1 + np.exp(-(z1[:, j] + sign * h * nudged)))             # (R, B)
                change = (a1_j - a1[:, j]) * mask                                   # (R, B)
                loss_at[sign] = mean_losses(z2 + change[:, :, None] * p.w2[j])      # (R, B, 10) -> (R,)
            incoming[start:start + len(nudged)] = (loss_at[+1] - loss_at[-1]) / (2 * h)
        slopes.w1[:, j], slopes.b1[j] = incoming[:-1], incoming[-1]

    # Outgoing knobs: w2[j, k] nudges z2[:, k] by h * out_in[:, j]; b2[k] by h.
    sources = np.hstack([out_in, np.ones((n, 1))]).T       # (H + 1, B)
    eye = np.eye(OUTPUT_SIZE)                              # (10, 10): which output k is nudged
    units_at_once = max(1, rows // OUTPUT_SIZE)            # each unit nudges 10 outputs: 10 networks
    for start in range(0, hidden + 1, units_at_once):
        chunk = sources[start:start + units_at_once]       # (C, B)
        step = chunk[:, None, :, None] * eye[None, :, None, :]                     # (C, 10, B, 10)
        outgoing = (mean_losses(z2 + h * step) - mean_losses(z2 - h * step)) / (2 * h)   # (C, 10)
        for row, j in enumerate(range(start, start + len(chunk))):
            if j < hidden:
                slopes.w2[j] = outgoing[row]
            else:
                slopes.b2[:] = outgoing[row]
    return slopes
