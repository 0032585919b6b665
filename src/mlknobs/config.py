"""The training knobs as one frozen, validated dataclass; saved as JSON inside every model file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from mlknobs.data.datasets import DATASETS
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.optim import SCHEDULES


@dataclass(frozen=True)
class TrainConfig:
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

    def __post_init__(self):
        problems = []
        for name in ("epochs", "hidden_size", "batch_size", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a whole number >= 1")
        for name in ("val_size", "early_stopping", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name} must be a whole number >= 0")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append("learning_rate must be a positive number")
        if not (0 <= self.momentum < 1):
            problems.append("momentum must be in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append("weight_decay must be >= 0")
        if self.nesterov and self.momentum == 0:
            problems.append("nesterov needs a momentum > 0")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}")
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {', '.join(DATASETS)}")
        if self.early_stopping and not self.val_size:
            problems.append("early stopping needs a validation set (val_size > 0)")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from saved JSON; unknown keys (from a newer mlknobs) are an error, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)
