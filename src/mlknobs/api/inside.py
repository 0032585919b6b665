"""Looking inside the network from Python: one step of learning on one digit with every number
(explain), and backprop against nudging for every knob of a small network (gradcheck). Their
defaults and limits are lesson_settings.py's, which the commands read too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mlknobs.api.models import check_model, image_rows
from mlknobs.config import LOSS_NAMES
from mlknobs.errors import InputError, SettingsError
from mlknobs.lesson_settings import (
    DEFAULT_H,
    DEFAULT_TOLERANCE,
    GRADCHECK_BATCH_SIZE,
    GRADCHECK_HIDDEN_SIZE,
    GRADCHECK_LOSS,
    GRADCHECK_RANGES,
    GRADCHECK_SEED,
    H_RANGE,
    STEP_RATE_RANGE,
)
from mlknobs.nn.model import Model

if TYPE_CHECKING:
    from mlknobs.nn.explain import Explanation
    from mlknobs.nn.gradcheck import GradcheckResult


def explain(model: Model, image, label: int, *, knob: str | None = None, learning_rate: float | None = None,
            h: float = DEFAULT_H) -> Explanation:
    """One step of learning on one digit, with every number (what `mlknobs explain` prints).

    image: one image (784,) or (28, 28) uint8, or a picture's path or bytes; label: its right class.
    knob: the knob to follow back by the chain rule and to nudge by h, as "w1[350,3]", "b1[3]",
    "w2[3,7]" or "b2[7]" (default: the w1 knob with the largest slope). learning_rate: of the one
    plain gradient-descent step (default: the model's). Computed in float64.

    The result holds the forward pass (x, z1, a1, z2, outputs, probabilities, loss), dz2, the
    slopes of every knob (a Params), `knob` (its chain of equations, backprop_slope, nudge_slope,
    relative_difference) and `step` (loss_before, loss_after, predicted_change, ...).
    """
    from mlknobs.nn.explain import explain_step, parse_knob

    check_model(model)
    rows, single = image_rows(model, image)
    if not single:
        raise InputError("image", "explain takes one image, (784,) or (28, 28)")
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
            or not 0 <= label < len(model.class_names):
        raise InputError("label", f"label must be a class of the model, 0 to {len(model.class_names) - 1}, "
                                  f"not {label!r}")
    rate = model.config.learning_rate if learning_rate is None else learning_rate
    for name, value, allowed in (("learning_rate", rate, STEP_RATE_RANGE), ("h", h, H_RANGE)):
        problem = allowed.problem(value, name)
        if problem:
            raise InputError(name, problem)
    chosen = parse_knob(knob, model.params.hidden_size) if knob is not None else None
    return explain_step(model.params, model.loss, model.scaling, rows[0], int(label), chosen, rate, h)


def gradcheck(loss: str = GRADCHECK_LOSS, hidden_size: int = GRADCHECK_HIDDEN_SIZE,
              batch_size: int = GRADCHECK_BATCH_SIZE, eps: float = DEFAULT_H, seed: int = GRADCHECK_SEED,
              tolerance: float = DEFAULT_TOLERANCE, dropout: float = 0.0) -> GradcheckResult:
    """Backprop against the definition of the slope for every knob of a small random float64 network:
    each knob nudged by +-eps, (L(w + eps) - L(w - eps)) / 2 eps beside the backprop slope.

    The result's `passed` says whether every relative error is within `tolerance`;
    `max_relative_error` has one per array (w1, b1, w2, b2), `samples` the knobs with the
    largest slopes. What `mlknobs gradcheck` prints.
    """
    from mlknobs.nn.gradcheck import gradcheck as check

    if loss not in LOSS_NAMES:
        raise SettingsError([("loss", f"{{loss}} must be one of {', '.join(LOSS_NAMES)}, not {loss!r}")])
    given = {"hidden_size": hidden_size, "batch_size": batch_size, "eps": eps, "tolerance": tolerance,
             "seed": seed, "dropout": dropout}
    for name, value in given.items():
        problem = GRADCHECK_RANGES[name].problem(value, name)
        if problem:
            raise InputError(name, problem)
    return check(loss, hidden_size, batch_size, eps, seed, tolerance, dropout=dropout)
