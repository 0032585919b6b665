"""The training settings: their names, choices, defaults and limits, in one frozen dataclass.

This is the one source of truth: the CLI reads its option defaults and choices from here, the
library validates with it, and every model file stores it as JSON. It imports no NumPy, so that
`mlknobs --help` stays fast; the registries (nn.losses.LOSSES, nn.schedules.SCHEDULES,
data.datasets.DATASETS) check at import that they hold exactly the names listed here.

Settings (hyperparameters) are not knobs: the knobs are the weights and biases that training turns.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from mlknobs.bounds import Range
from mlknobs.errors import SettingsError

LOSS_NAMES = ("cross-entropy", "mse")
SCHEDULE_NAMES = ("constant", "step", "cosine", "one-cycle")
DATASET_NAMES = ("mnist", "fashion-mnist")   # data/datasets.py checks that DATASETS holds exactly these
INPUT_SCALING_NAMES = ("standardize", "unit", "raw")   # nn/model.py INPUT_SCALINGS holds exactly these
GRADIENT_NAMES = ("backprop", "nudge")                 # training/step.py GRADIENTS holds exactly these
# The settings that take one of a few names, and those names (the web page lists them from here).
SETTING_CHOICES = {"schedule": SCHEDULE_NAMES, "loss": LOSS_NAMES, "dataset": DATASET_NAMES,
                   "input_scaling": INPUT_SCALING_NAMES, "gradients": GRADIENT_NAMES}
MAX_HIDDEN_SIZE = 65_536        # 784 x 65,536 float32 weights are 205 MB; far beyond any use here
MAX_BATCH_SIZE = 65_536
MAX_DROPOUT = 0.9
DISTORTIONS = ("rotate", "scale", "shear", "shift", "elastic", "elastic_sigma")
DISTORTION_LIMITS = {"rotate": (0.0, 90.0), "scale": (0.0, 0.5), "shear": (0.0, 1.0), "shift": (0.0, 8.0),
                     "elastic": (0.0, 8.0), "elastic_sigma": (0.5, 20.0)}
# The numbers each numeric setting may take (bool, str, NaN and infinity are refused by every Range).
SETTING_RANGES = {
    "epochs": Range(1, 1_000_000, integer=True),
    "hidden_size": Range(1, MAX_HIDDEN_SIZE, integer=True),
    "batch_size": Range(1, MAX_BATCH_SIZE, integer=True),
    "threads": Range(1, 1024, integer=True),
    "val_size": Range(0, integer=True),
    "early_stopping": Range(0, integer=True),
    "seed": Range(0, 2**63 - 1, integer=True),
    "learning_rate": Range(0, low_open=True),
    "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0),
    "dropout": Range(0, MAX_DROPOUT),
    "train_size": Range(0, integer=True),
    "log_every": Range(0, integer=True),
    "init_scale": Range(0, 100, low_open=True),
    **{name: Range(low, high) for name, (low, high) in DISTORTION_LIMITS.items()},
}
# `train --gradients nudge` costs about 2 x 785 x H loss evaluations of a batch per step: a run whose
# epoch is estimated (from a timed partial step) above this many seconds is refused before training.
NUDGE_EPOCH_LIMIT = 600.0
# What `train --augment` sets, for the distortions not given explicitly (chosen on a validation
# split: see README, "Distorted digits").
AUGMENT_DEFAULTS = {"rotate": 12.0, "scale": 0.1, "shear": 0.15, "shift": 1.5, "elastic": 1.0, "elastic_sigma": 4.0}


def max_threads() -> int:
    """BLAS threads beyond the cores this process may use only slow training down."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class TrainConfig:
    """The settings (hyperparameters) of one training run, checked when made: SettingsError lists every
    problem. Saved in each model file; `replace(**changes)` returns a changed copy."""

    epochs: int = 3
    hidden_size: int = 512
    batch_size: int = 128
    learning_rate: float = 0.5
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "one-cycle"
    loss: str = "cross-entropy"
    val_size: int = 0            # training samples held out for validation (the last ones)
    early_stopping: int = 0      # patience in epochs; 0 = off (needs val_size > 0)
    seed: int = 0
    threads: int = 1             # BLAS threads; 1 is the measured best on shared 2-core machines
    dataset: str = "mnist"
    dropout: float = 0.0         # probability of dropping a hidden unit in a training pass
    # Distorted training digits (data/augment.py): each digit of each epoch draws its own values
    # uniformly within these limits; all zero means the clean digits.
    rotate: float = 0.0          # degrees
    scale: float = 0.0           # relative size change
    shear: float = 0.0           # slant factor
    shift: float = 0.0           # pixels
    elastic: float = 0.0         # pixels: size of the smooth elastic displacement field
    elastic_sigma: float = 4.0   # pixels: its smoothness
    train_size: int = 0          # train on the first N training digits; 0 = all of them
    log_every: int = 0           # record the batch loss every N steps (step_losses); 0 = off
    input_scaling: str = "standardize"   # how pixels become inputs: nn/model.py INPUT_SCALINGS
    init_scale: float = 1.0      # multiplies the Glorot range of the initial weights
    gradients: str = "backprop"  # how slopes are found: backprop, or nudge (central differences)

    @property
    def distortions(self) -> dict:
        """The augmentation settings, as data/augment.py's Distortions takes them."""
        return {name: getattr(self, name) for name in DISTORTIONS}

    @property
    def augmented(self) -> bool:
        return any(getattr(self, name) for name in DISTORTIONS if name != "elastic_sigma")

    def __post_init__(self):
        problems = list(self._problems())
        if problems:
            raise SettingsError(problems)

    def _problems(self):
        """(setting, what is wrong) pairs; the text names settings as {setting} placeholders."""
        for name, allowed in SETTING_RANGES.items():
            problem = allowed.problem(getattr(self, name), f"{{{name}}}")
            if problem is not None:
                yield name, problem
        if not isinstance(self.nesterov, bool):
            yield "nesterov", "{nesterov} must be true or false"
        elif self.nesterov and self.momentum == 0:
            yield "nesterov", "{nesterov} needs a {momentum} above 0"
        for name, choices in SETTING_CHOICES.items():
            if getattr(self, name) not in choices:
                yield name, f"{{{name}}} must be one of {', '.join(choices)}"
        if self.early_stopping and not self.val_size:
            yield "early_stopping", "{early_stopping} needs a validation set ({val_size} above 0)"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_file_dict(self) -> dict:
        """The settings as model files store them: the ones newer than format 1's first release
        (dropout, the distortions, train_size, ...) only when they are used, so that a plain model still loads in
        an mlknobs that predates them."""
        plain = DEFAULTS_OF_LATER_SETTINGS
        return {k: v for k, v in asdict(self).items() if not (k in plain and v == plain[k])}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from saved JSON; unknown keys (from a newer mlknobs) are an error, missing ones default."""
        if not isinstance(data, dict):
            raise SettingsError([("config", "the saved settings are not an object")])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError([(None, f"unknown training settings: {', '.join(map(str, unknown))}")])
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return type(self)(**{**self.to_dict(), **changes})


DEFAULTS = TrainConfig()
DEFAULTS_OF_LATER_SETTINGS = {name: getattr(DEFAULTS, name) for name in (
    "dropout", *DISTORTIONS, "train_size", "log_every", "input_scaling", "init_scale", "gradients")}
