"""The settings of the two commands that look inside the network, explain and gradcheck: their
defaults and limits, read by the CLI's options, the Python API's checks and the library's defaults.

No NumPy here, so that `mlknobs explain --help` and `mlknobs gradcheck --help` show them without
paying for it (as training/lr_find_settings.py does for lr-find).

Why these numbers: both commands measure a slope by nudging a knob, (L(w + h) - L(w - h)) / 2h,
in float64. With h = 1e-5 the central difference's own error (order h^2, ~1e-10) and round-off
(~1e-16 / h) stay far below the slopes; a nudge above 1 measures the loss's curvature more than
its slope. gradcheck nudges every knob of a random network twice, a forward pass over the whole
batch each time: its hidden size and batch are capped.
"""

from __future__ import annotations

from mlknobs.bounds import Range
from mlknobs.config import LOSS_NAMES, MAX_DROPOUT

MAX_SEED = 2**63 - 1

# explain: one digit, one plain step of gradient descent
DEFAULT_H = 1e-5                        # the nudge (gradcheck's eps too)
MAX_H = 1.0
MAX_STEP_RATE = 1e6                     # the step's learning rate, as lr-find's highest
H_RANGE = Range(0, MAX_H, low_open=True)
STEP_RATE_RANGE = Range(0, MAX_STEP_RATE, low_open=True)

# gradcheck: backprop against nudging, every knob of a small random network
GRADCHECK_LOSS = LOSS_NAMES[0]
GRADCHECK_HIDDEN_SIZE, GRADCHECK_BATCH_SIZE, GRADCHECK_SEED = 16, 8, 0
DEFAULT_TOLERANCE = 1e-5                # the largest relative error that passes
MAX_GRADCHECK_HIDDEN_SIZE, MAX_GRADCHECK_BATCH_SIZE = 256, 4096
MAX_EPS = MAX_TOLERANCE = 1e3
GRADCHECK_RANGES = {
    "hidden_size": Range(1, MAX_GRADCHECK_HIDDEN_SIZE, integer=True),
    "batch_size": Range(1, MAX_GRADCHECK_BATCH_SIZE, integer=True),
    "eps": Range(0, MAX_EPS, low_open=True),
    "tolerance": Range(0, MAX_TOLERANCE, low_open=True),
    "seed": Range(0, MAX_SEED, integer=True),
    "dropout": Range(0, MAX_DROPOUT),
}
