"""What a training run (loop.fit) and the learning-rate range test (lr_find) both build from a TrainConfig.

    fresh_start(config, fit_set, rng) -> (params, scaling)   new knobs and the input scaling of the data
    fresh_model(config, train, class_names) -> Model         the untrained network a run starts from
    check_initial(config, initial, source)                    a model to start from must fit the settings
    Stepper(config, params, scaling, rows, rng)               the network with its optimizer: forward, step
    GRADIENTS, check_time(...)                                slopes by backprop or by nudging; nudging's time check

One place sets the network up from the settings, so a setting that shapes training (a loss, dropout,
momentum, ...) reaches every caller that trains, and the range test measures the network `train`
will run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlknobs.config import GRADIENT_NAMES, NUDGE_EPOCH_LIMIT, TrainConfig
from mlknobs.data.splits import Split, first, split_validation
from mlknobs.errors import DataFormatError, SettingsError
from mlknobs.nn.model import INPUT_SCALINGS, MIN_INPUT_STD, OUTPUT_SIZE, Cache, InputScaling, Model, Network, Params
from mlknobs.nn.nudge import nudge_slopes
from mlknobs.nn.optim import SGD


def fresh_start(config: TrainConfig, fit_set: Split, rng: np.random.Generator) -> tuple[Params, InputScaling]:
    """A new network's knobs (drawn from `rng`) and the input scaling fitted to the training images.

    Raises DataFormatError if the images are (nearly) all the same: there is nothing to learn.
    """
    params = Params.initial(config.hidden_size, rng, scale=config.init_scale)
    scaling = INPUT_SCALINGS[config.input_scaling](fit_set.images)     # standardize, unit or raw
    if scaling.std < MIN_INPUT_STD:
        raise DataFormatError(f"the {len(fit_set):,} training images are (nearly) all the same "
                              f"(pixel std {scaling.std:.1e}): there is nothing to learn from")
    return params, scaling


def fresh_model(config: TrainConfig, train: Split, class_names) -> Model:
    """The untrained network loop.fit starts from with these settings and training data: the knobs
    drawn first from a Generator seeded with `config.seed`, the input scaling fitted to the images it
    trains on (the first `train_size`, less the last `val_size`). explain --fresh-network and
    mlknobs.fresh_model show it; tests/training/test_step.py holds it against fit's start."""
    fit_set, _ = split_validation(first(train, config.train_size), config.val_size)   # as loop.fit does
    params, scaling = fresh_start(config, fit_set, np.random.default_rng(config.seed))
    return Model(params, config, scaling, list(class_names))


def check_initial(config: TrainConfig, initial: Model, source: object = "the initial model") -> None:
    """A model a new run starts from (train --init-from) must have the run's hidden size.

    `source` names it in the message (its path, when it came from a file).
    """
    if initial.params.hidden_size != config.hidden_size:
        raise SettingsError([("hidden_size", f"{{hidden_size}} {config.hidden_size} does not match {source}, "
                                             f"which has {initial.params.hidden_size} hidden units")])


class Stepper:
    """The network that trains `params`, its optimizer and a buffer for one batch of pixels.

    Built from the settings in one place: the loss, dropout, momentum, Nesterov and weight decay
    of `config`. `rng` draws the dropout masks (the run's Generator, so a resumed run draws the
    same ones); `rows` is the largest batch.
    """

    def __init__(self, config: TrainConfig, params: Params, scaling: InputScaling, rows: int,
                 rng: np.random.Generator):
        self.params, self.scaling, self.rng = params, scaling, rng
        self.net = Network(params, config.loss, rows, dropout=config.dropout)
        self.optimizer = SGD(params, config.momentum, config.nesterov, config.weight_decay)
        self.pixels = np.empty((rows, params.w1.shape[0]), np.uint8)     # (rows, 784), filled by batches()
        self.gradients = GRADIENTS[config.gradients]

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, Cache]:
        """A training pass over uint8 pixels (n, 784): outputs a2 (n, 10) and the backward's cache.

        With dropout, a fresh mask is drawn first (training passes only; evaluation never drops).
        """
        net = self.net
        keep = net.dropout_mask(len(pixels), self.rng) if net.dropout else None     # (n, H) or None
        return net.forward(net.load_pixels(pixels, self.scaling), keep)

    def step(self, cache: Cache, labels: np.ndarray, learning_rate: float) -> None:
        """The slopes of every knob (by backprop or by nudging, config.gradients) and one optimizer update."""
        self.optimizer.step(self.gradients.slopes(self.net, cache, labels), learning_rate)


# --- how the slopes are found: `train --gradients backprop|nudge` ------------------------------------

def _backprop(net: Network, cache: Cache, labels: np.ndarray) -> Params:
    """The chain rule, backwards through the cached pass (nn/model.py; nn/plain.py reads plainly)."""
    return net.backward(cache, labels)


def _nudge(net: Network, cache: Cache, labels: np.ndarray) -> Params:
    """Every knob's slope as (L(w + h) - L(w - h)) / 2h of the batch loss, evaluated in float64
    (nn/nudge.py), put into the network's gradient buffer for the same optimizer."""
    slopes = nudge_slopes(net.params, net.loss, cache.x, labels, cache.keep)
    np.copyto(net.grads.flat, slopes.flat, casting="same_kind")
    return net.grads


@dataclass(frozen=True)
class Gradients:
    slopes: Callable[[Network, Cache, np.ndarray], Params]    # (net, cache of the pass, labels) -> slopes
    costly: bool                                               # slow enough that a run's time is checked first


GRADIENTS = {"backprop": Gradients(_backprop, costly=False), "nudge": Gradients(_nudge, costly=True)}
assert tuple(GRADIENTS) == GRADIENT_NAMES, "config.GRADIENT_NAMES must list exactly these"

# Nudging must never silently start a run that takes days: config.NUDGE_EPOCH_LIMIT (seconds per epoch).
TIMED_UNITS = 4                 # hidden units nudged to time a step (the cost grows linearly with H)


def check_time(config: TrainConfig, stepper: Stepper, rows: int, steps_per_epoch: int, train_size: int) -> float:
    """For costly gradients: the estimated seconds per epoch, measured on a partial step (the
    incoming knobs of TIMED_UNITS hidden units, scaled to all H); raises SettingsError naming
    `gradients` with the estimate and a smaller network that fits when it exceeds NUDGE_EPOCH_LIMIT.
    Returns 0 for backprop (nothing measured)."""
    if not stepper.gradients.costly:
        return 0.0
    hidden = config.hidden_size
    units = range(min(hidden, TIMED_UNITS))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (rows, stepper.params.w1.shape[0]))          # (rows, 784) stand-in inputs
    labels = rng.integers(0, OUTPUT_SIZE, rows)
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        nudge_slopes(stepper.params, stepper.net.loss, x, labels, units=units)
        seconds.append(time.perf_counter() - started)
    per_step = min(seconds) * hidden / len(units)
    per_epoch = per_step * steps_per_epoch
    if per_epoch > NUDGE_EPOCH_LIMIT:
        share = NUDGE_EPOCH_LIMIT / per_epoch
        smaller_hidden, fewer = max(1, int(hidden * share)), max(rows, int(train_size * share))
        raise SettingsError([("gradients", (
            f"{{gradients}} nudge on this network would take about {_duration(per_epoch)} per epoch "
            f"({_duration(per_step)} per step here for {hidden * 795 + 10:,} knobs, {steps_per_epoch:,} steps), "
            f"above the limit of {_duration(NUDGE_EPOCH_LIMIT)}: nudging fits e.g. {{hidden_size}} "
            f"{smaller_hidden} or {{train_size}} {fewer}"))])
    return per_epoch


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.2g} s"
