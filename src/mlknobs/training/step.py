"""What a training run (loop.fit) and the learning-rate range test (lr_find) both build from a TrainConfig.

    fresh_start(config, fit_set, rng) -> (params, scaling)   new knobs and the input scaling of the data
    check_initial(config, initial, source)                    a model to start from must fit the settings
    Stepper(config, params, scaling, rows, rng)               the network with its optimizer: forward, step

One place sets the network up from the settings, so a setting that shapes training (a loss, dropout,
momentum, ...) reaches every caller that trains, and the range test measures the network `train`
will run.
"""

from __future__ import annotations

import numpy as np

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import DataFormatError, SettingsError
from mlknobs.nn.model import INPUT_SCALINGS, MIN_INPUT_STD, Cache, InputScaling, Model, Network, Params
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

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, Cache]:
        """A training pass over uint8 pixels (n, 784): outputs a2 (n, 10) and the backward's cache.

        With dropout, a fresh mask is drawn first (training passes only; evaluation never drops).
        """
        net = self.net
        keep = net.dropout_mask(len(pixels), self.rng) if net.dropout else None     # (n, H) or None
        return net.forward(net.load_pixels(pixels, self.scaling), keep)

    def step(self, cache: Cache, labels: np.ndarray, learning_rate: float) -> None:
        """Backward through the cached pass and one optimizer update of the knobs."""
        self.optimizer.step(self.net.backward(cache, labels), learning_rate)
