"""Mini-batch SGD with momentum (optionally Nesterov) and L2 weight decay (schedules: schedules.py).

With gradient g, velocity v, momentum mu, learning rate lr and weight decay lambda (weights only,
not biases, so the decay shrinks the knobs that shape the features rather than the offsets):

    g <- g + lambda * w
    v <- mu * v + g
    w <- w - lr * v                   (classical momentum)
    w <- w - lr * (g + mu * v)        (Nesterov: look one step ahead along v)

This is the same formulation as PyTorch's SGD, so the two can be compared knob for knob.
"""

from __future__ import annotations

import numpy as np

from mlknobs.nn.model import Params


class SGD:
    """Owns the velocity and one scratch buffer per knob; `step` updates the Params in place."""

    def __init__(self, params: Params, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.params = params
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.velocity = params.zeros_like()
        self._scratch = params.zeros_like()

    def step(self, grads: Params, lr: float) -> None:
        """w <- w - lr * update for every knob at once, on the flat vectors (may overwrite `grads`)."""
        w, g, v, scratch = self.params.flat, grads.flat, self.velocity.flat, self._scratch.flat
        dtype = w.dtype.type
        if self.weight_decay:
            weights = slice(0, self.params.weight_count)          # biases are not decayed
            np.multiply(w[weights], dtype(self.weight_decay), out=scratch[weights])
            g[weights] += scratch[weights]                         # g + lambda w
        if self.momentum:
            mu = dtype(self.momentum)
            v *= mu
            v += g                                                 # v = mu v + g
            if self.nesterov:
                np.multiply(v, mu, out=scratch)
                scratch += g                                       # g + mu v
                update = scratch
            else:
                update = v
        else:
            update = g
        # lr * update goes into g, which was just read and is still in cache: a separate scratch
        # vector here measured ~1.5x slower at H=800.
        np.multiply(update, dtype(lr), out=g)
        w -= g
