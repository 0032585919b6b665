"""Check the hand-derived gradients against the definition: nudge each knob by h, watch the loss.

For every knob w the central difference (L(w + h) - L(w - h)) / 2h approximates dL/dw with an
error of order h^2. In float64 with h = 1e-5 that is ~1e-10, so any backprop mistake (a missing
transpose, a forgotten 1/B, a wrong sigmoid slope) stands out by many orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlknobs import lesson_settings as defaults
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import INPUT_SIZE, OUTPUT_SIZE, InputScaling, Network, Params

# Relative errors are |backprop - numeric| / max(|backprop| + |numeric|, FLOOR). Round-off in the
# central difference is about machine_eps * |L| / h ~ 5e-11 at h = 1e-5, so a knob whose slope is
# essentially zero would otherwise report that noise as a large relative error.
FLOOR = 1e-4
MNIST_SCALING = InputScaling(mean=0.1307, std=0.3081)


def relative_difference(backprop, numeric, floor: float = FLOOR):
    """|backprop - numeric| / max(|backprop| + |numeric|, floor), elementwise (arrays or floats)."""
    return np.abs(backprop - numeric) / np.maximum(np.abs(backprop) + np.abs(numeric), floor)


@dataclass
class KnobCheck:
    name: str            # e.g. "w1[412, 3]"
    value: float
    numeric: float       # (L(w + h) - L(w - h)) / 2h
    backprop: float
    relative_error: float


@dataclass
class GradcheckResult:
    loss: str
    hidden_size: int
    batch_size: int
    eps: float
    max_relative_error: dict[str, float]     # per parameter array
    knobs_checked: dict[str, int]
    samples: list[KnobCheck]
    tolerance: float

    @property
    def passed(self) -> bool:
        return all(err <= self.tolerance for err in self.max_relative_error.values())


def gradcheck(loss: str = defaults.GRADCHECK_LOSS, hidden_size: int = defaults.GRADCHECK_HIDDEN_SIZE,
              batch_size: int = defaults.GRADCHECK_BATCH_SIZE, eps: float = defaults.DEFAULT_H,
              seed: int = defaults.GRADCHECK_SEED, tolerance: float = defaults.DEFAULT_TOLERANCE,
              samples_per_array: int = 2, dropout: float = 0.0) -> GradcheckResult:
    """Compare backprop with central differences for every knob of a small float64 network.

    With dropout > 0 one random mask is drawn and held fixed: the loss is then an ordinary
    function of the knobs, and its slopes must match the backward pass through the same mask.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    rng = np.random.default_rng(seed)
    params = Params.initial(hidden_size, rng, dtype=np.float64)
    # Non-zero biases, so that their gradients are checked away from the trivial point.
    params.b1[:] = rng.normal(0, 0.5, hidden_size)
    params.b2[:] = rng.normal(0, 0.5, OUTPUT_SIZE)
    pixels = rng.integers(0, 256, size=(batch_size, INPUT_SIZE), dtype=np.uint8)
    labels = rng.integers(0, OUTPUT_SIZE, size=batch_size)

    net = Network(params, loss, batch_size, dropout=dropout)
    x = net.load_pixels(pixels, MNIST_SCALING)
    keep = net.dropout_mask(batch_size, rng).copy() if dropout else None    # (B, H), fixed

    def loss_now() -> float:
        a2, _ = net.forward(x, keep)
        return net.loss.value(a2, labels)

    _, cache = net.forward(x, keep)
    backprop = net.backward(cache, labels).copy()

    max_error, counts, samples = {}, {}, []
    for name, array in params.arrays().items():
        analytic = getattr(backprop, name)
        numeric = np.empty_like(array)
        flat, flat_numeric = array.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            loss_plus = loss_now()
            flat[i] = original - eps
            loss_minus = loss_now()
            flat[i] = original
            flat_numeric[i] = (loss_plus - loss_minus) / (2 * eps)
        error = relative_difference(analytic, numeric)
        max_error[name], counts[name] = float(error.max()), int(array.size)
        # Show the knobs with the largest slopes: the ones that matter most for the loss.
        for i in np.argsort(-np.abs(analytic).reshape(-1))[:samples_per_array]:
            index = np.unravel_index(i, array.shape)
            label = f"{name}[{', '.join(map(str, index))}]"
            samples.append(KnobCheck(label, float(array[index]), float(numeric[index]),
                                     float(analytic[index]), float(error[index])))
    return GradcheckResult(loss, hidden_size, batch_size, eps, max_error, counts, samples, tolerance)
