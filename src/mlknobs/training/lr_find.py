"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find).

From a fresh network, train one mini-batch per step while the learning rate grows exponentially
from `start_lr` to `end_lr` over `steps` batches:

    lr_i = start_lr * (end_lr / start_lr) ** (i / (steps - 1))

and record the loss of every batch, smoothed by an exponential moving average with its start-up
bias removed (as Adam removes it from its moments):

    avg_i      = beta * avg_(i-1) + (1 - beta) * loss_i        avg_(-1) = 0, beta = 0.98
    smoothed_i = avg_i / (1 - beta ** (i + 1))

Too small a rate barely moves the loss; a good one makes it fall fastest; too large a one makes
it climb. The test stops once the smoothed loss is above BLOW_UP times its minimum (or stops being
finite): everything past that point only measures divergence. A rule from `RULES` then reads a
learning rate off the curve.

Nothing is saved: the network, its optimizer and the batches live and die here (no model file,
no checkpoint). They are set up by training/step.py, as `fit` sets them up (dropout, input scaling
and initial weight range included), on the digits `fit` trains on (train_size, val_size), so the
test measures the network `train` will run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mlknobs.config import TrainConfig, max_threads
from mlknobs.data.batches import batches
from mlknobs.data.splits import Split, first, split_validation
from mlknobs.errors import SettingsError
from mlknobs.nn.blas import blas_threads
from mlknobs.training.lr_find_settings import END_LR, START_LR, STEPS, problems
from mlknobs.training.step import Stepper, fresh_start

SMOOTHING = 0.98     # beta of the moving average: about the last 50 batches count
BLOW_UP = 4.0        # stop once the smoothed loss exceeds this many times its minimum
SKIP_START = 10      # the first points' average rests on a few batches: too noisy for a slope


@dataclass(frozen=True)
class LrFindStep:
    """What the callback is told after every batch."""

    step: int            # from 1
    steps: int
    learning_rate: float
    loss: float          # smoothed


@dataclass(frozen=True)
class LrFindResult:
    learning_rates: list[float]   # one per batch trained, rising
    losses: list[float]           # the smoothed loss at each
    suggested_lr: float
    rule: str                     # a RULES name
    stopped_at: float | None      # the learning rate at which the loss blew up; None if every step ran


def steepest_descent(learning_rates: np.ndarray, losses: np.ndarray) -> float:
    """Where the smoothed loss falls fastest against log(lr), before its minimum."""
    lowest = int(np.argmin(losses))
    start = min(SKIP_START, max(lowest - 1, 0))
    log_lr = np.log(learning_rates[start:lowest + 1])
    # No descent to speak of, or rates so close that they round to the same float (no slope can be
    # taken): the minimum is the best we have.
    if lowest - start < 2 or not np.all(np.diff(log_lr) > 0):
        return float(learning_rates[lowest])
    slope = np.gradient(losses[start:lowest + 1], log_lr)          # d loss / d log(lr)
    return float(learning_rates[start + int(np.argmin(slope))])


def minimum_over_ten(learning_rates: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the learning rate where the smoothed loss is lowest (fastai's old `lr_min / 10`)."""
    return float(learning_rates[int(np.argmin(losses))] / 10)


# How to read a learning rate off the curve: name -> (rule, what it means in words).
RULES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], str]] = {
    "steepest": (steepest_descent, "steepest descent of the smoothed loss"),
    "minimum/10": (minimum_over_ten, "the smoothed loss's minimum divided by 10"),
}
# Chosen by measurement on real MNIST with the default recipe (README, "Turning the settings").
DEFAULT_RULE = "minimum/10"


def lr_find(config: TrainConfig, train: Split, *, start_lr: float = START_LR, end_lr: float = END_LR,
            steps: int = STEPS, rule: str = DEFAULT_RULE,
            callback: Callable[[LrFindStep], None] | None = None) -> LrFindResult:
    """Run the range test with the network settings of `config` on `train` (its fit part: the first
    `config.train_size` samples without the last `config.val_size`, as training uses it); returns
    the curve and a suggestion.

    Uses config's hidden_size, batch_size, momentum, nesterov, weight_decay, loss, dropout,
    input_scaling, init_scale, train_size, val_size, seed and threads (the network and optimizer are
    set up as `fit` sets them up: training/step.py); its learning rate, schedule, epochs and
    distortions play no part. start_lr and end_lr lie in LR_RANGE, steps in STEPS_RANGE
    (lr_find_settings.py); anything else raises SettingsError naming it.
    """
    found = problems(start_lr, end_lr, steps)
    if rule not in RULES:
        found.append(("rule", f"{{rule}} must be one of {', '.join(RULES)}"))
    if found:
        raise SettingsError(found)
    with blas_threads(min(config.threads, max_threads())):
        return _RangeTest(config, train, start_lr, end_lr, steps).run(rule, callback)


class _RangeTest:
    """The fresh network (set up as `fit` sets it up), its optimizer and an endless stream of shuffled batches."""

    def __init__(self, config: TrainConfig, train: Split, start_lr: float, end_lr: float, steps: int):
        self.config, self.steps = config, steps
        self.fit_set, _ = split_validation(first(train, config.train_size), config.val_size)   # as fit does
        self.rng = np.random.default_rng(config.seed)       # the same initial weights as `train --seed`
        params, scaling = fresh_start(config, self.fit_set, self.rng)
        self.stepper = Stepper(config, params, scaling, min(config.batch_size, len(self.fit_set)), self.rng)
        self.growth = (end_lr / start_lr) ** (1 / (steps - 1))   # lr_(i+1) = lr_i * growth
        self.start_lr, self.end_lr = start_lr, end_lr

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(pixels, labels) for ever: epoch after epoch, each in a fresh order."""
        while True:
            order = self.rng.permutation(len(self.fit_set))
            for _, pixels, labels in batches(self.fit_set, order, self.config.batch_size, self.stepper.pixels):
                yield pixels, labels

    def run(self, rule: str, callback) -> LrFindResult:
        stepper, learning_rates, losses = self.stepper, [], []
        average, lowest, stopped_at = 0.0, math.inf, None
        for i, (pixels, labels) in zip(range(self.steps), self.batches()):
            learning_rate = min(self.start_lr * self.growth ** i, self.end_lr)   # (rounding may pass end_lr)
            a2, cache = stepper.forward(pixels)                            # (n, 10), dropout as in training
            loss = stepper.net.loss.value(a2, labels)
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            smoothed = average / (1 - SMOOTHING ** (i + 1))               # bias correction
            if not math.isfinite(smoothed):
                stopped_at = learning_rate
                break
            learning_rates.append(learning_rate)
            losses.append(smoothed)
            if callback is not None:
                callback(LrFindStep(i + 1, self.steps, learning_rate, smoothed))
            if smoothed > BLOW_UP * lowest:
                stopped_at = learning_rate
                break
            lowest = min(lowest, smoothed)
            stepper.step(cache, labels, learning_rate)
        if not losses:
            raise SettingsError([("start_lr", f"the loss was not finite at the first learning rate, "
                                              f"{{start_lr}} {self.start_lr:g}: start lower")])
        rate, _ = RULES[rule]
        suggested = rate(np.asarray(learning_rates), np.asarray(losses))
        if not (math.isfinite(suggested) and suggested > 0):      # the rules pick from the curve: never
            raise SettingsError([("start_lr", f"the curve from {{start_lr}} {self.start_lr:g} to {{end_lr}} "
                                              f"{self.end_lr:g} gives no learning rate to suggest")])
        return LrFindResult(learning_rates, losses, suggested, rule, stopped_at)
