"""A sweep's grid: every setting's values, expanded to one TrainConfig per combination, and each run's id.

A run's id is derived from its settings alone: the swept values, readable, then a short hash of
every setting (`lr0.5-h64-seed1-3f2a9c1b`), so the same grid always gives the same ids.
Every check is linear in the number of values: a grid read from a file of 100,000 learning rates
is refused as fast as the same list on the command line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property

from mlknobs.config import DEFAULTS, TrainConfig
from mlknobs.errors import SettingsError
from mlknobs.text import value_text
from mlknobs.training.sweep_settings import SWEEP_DEFAULTS

SETTING_NAMES = tuple(f.name for f in fields(TrainConfig))
MAX_RUNS = 10_000                 # a grid larger than this is a typo, not a plan
SCALARS = (bool, int, float, str)  # what a setting's value may be

# How a swept setting shows in a run id: prefix + value (lr0.5, h64); "" shows the value alone (cosine).
# A setting not listed shows under its own name (dropout0.2).
ID_PREFIXES = {
    "epochs": "e", "hidden_size": "h", "batch_size": "b", "learning_rate": "lr", "momentum": "m",
    "weight_decay": "wd", "schedule": "", "loss": "", "val_size": "val", "early_stopping": "es",
    "threads": "t", "dataset": "",
}


@dataclass(frozen=True)
class Grid:
    """Every setting's values (a tuple; one value is a constant), in TrainConfig's order."""

    values: dict[str, tuple]

    @classmethod
    def of(cls, values: Mapping[str, Iterable] | None = None, defaults: TrainConfig = SWEEP_DEFAULTS) -> Grid:
        """A grid from some settings' values; the others are constants from `defaults`.

        Validates every combination through TrainConfig (SettingsError names the setting), and
        refuses empty or repeated values, a grid without a validation split, and more than MAX_RUNS.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - set(SETTING_NAMES))
        if unknown:
            raise SettingsError([(None, f"unknown training settings: {', '.join(unknown)}")])
        grid = {}
        for name in SETTING_NAMES:
            given = normalized(name, values.get(name, (getattr(defaults, name),)))
            if not given:
                raise SettingsError([(name, f"{{{name}}} needs at least one value")])
            if len(given) > MAX_RUNS:
                raise SettingsError([(name, f"{{{name}}} lists {len(given):,} values, more than the "
                                            f"{MAX_RUNS:,} runs a sweep may have")])
            repeated = sorted(value_text(v) for v, count in Counter(given).items() if count > 1)
            if repeated:
                raise SettingsError([(name, f"{{{name}}} lists {', '.join(repeated)} more than once")])
            grid[name] = given
        if any(v == 0 for v in grid["val_size"]):
            raise SettingsError([("val_size", "{val_size} must be above 0 in a sweep: runs are ranked on a "
                                              "validation split of the training set, never on the test set")])
        size = math.prod(len(v) for v in grid.values())
        if size > MAX_RUNS:
            raise SettingsError([(None, f"the grid has {size:,} combinations, more than {MAX_RUNS:,}")])
        result = cls(grid)
        for _ in result.configs():     # TrainConfig checks each combination (ranges, nesterov needs momentum, ...)
            pass
        return result

    @property
    def varying(self) -> tuple[str, ...]:
        """The settings with more than one value."""
        return tuple(name for name, values in self.values.items() if len(values) > 1)

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.values.values())

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per combination, the last setting changing fastest."""
        return list(self._configs)

    def run_ids(self) -> list[str]:
        """Each combination's run id, in the order of `configs`."""
        return list(self._run_ids)

    @cached_property
    def _configs(self) -> tuple[TrainConfig, ...]:       # made once: a grid may hold 10,000 runs
        names = list(self.values)
        return tuple(TrainConfig(**dict(zip(names, combination)))
                     for combination in itertools.product(*(self.values[n] for n in names)))

    @cached_property
    def _run_ids(self) -> tuple[str, ...]:
        return tuple(run_id(config, self.varying) for config in self._configs)

    def to_dict(self) -> dict:
        return {name: list(values) for name, values in self.values.items()}

    @classmethod
    def from_dict(cls, data) -> Grid:
        """The grid saved by `to_dict` (in sweep.json): an object of lists of values; SettingsError otherwise."""
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise SettingsError([(None, "the grid is not an object of lists")])
        return cls.of(data)


def normalized(name: str, values) -> tuple:
    """A setting's values as a tuple; an int where the setting is a float (--lr 1) becomes 1.0, the same run."""
    values = (values,) if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else tuple(values)
    if not all(isinstance(v, SCALARS) for v in values):
        raise SettingsError([(name, f"{{{name}}} takes numbers, text or true/false, not lists or objects")])
    is_float = isinstance(getattr(DEFAULTS, name), float)
    try:
        return tuple(float(v) if is_float and type(v) is int else v for v in values)
    except OverflowError:       # a whole number with hundreds of digits, from a file
        raise SettingsError([(name, f"{{{name}}} lists a number too large for it")]) from None


def run_id(config: TrainConfig, varying: Sequence[str] = ()) -> str:
    """The swept settings, readable, then a short hash of every setting: `lr0.5-h64-3f2a9c1b`."""
    settings = config.to_dict()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    readable = [f"{ID_PREFIXES.get(name, name)}{_id_value(settings[name])}" for name in varying]
    return "-".join([*readable, digest]) if readable else f"run-{digest}"


def _id_value(value) -> str:
    return str(int(value)) if isinstance(value, bool) else value_text(value).replace("/", "_")
