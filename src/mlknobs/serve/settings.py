"""The training settings as the page offers them: names, defaults and limits from mlknobs.config,
tightened where a web client could take the server's memory, and a JSON body checked against them.

    describe(flags)         every TrainConfig setting for GET /api/train/settings: its kind, default,
                            limits in numbers and in words, choices, CLI flag and help
    parse(body)             a POST /api/train body -> TrainConfig, or SettingsError naming the settings

The page lists what describe() returns and hard-codes none of it. Names are TrainConfig's
(`hidden_size`, `learning_rate`); one extra key, `augment`, does what `train --augment` does.
"""

from __future__ import annotations

import math
from dataclasses import fields

from mlknobs.bounds import Range
from mlknobs.config import AUGMENT_DEFAULTS, DEFAULTS, SETTING_CHOICES, SETTING_RANGES, TrainConfig, max_threads
from mlknobs.errors import SettingsError
from mlknobs.text import one_line

# What the server trains at most, whoever asks: with these, one run's network, optimizer and
# batch buffers stay under ~300 MB (a 4,096-unit layer is 13 MB a copy; a 1,024 x 4,096 batch
# buffer 16 MB), and its records (one per epoch) stay small. `mlknobs train` takes more.
SERVER_LIMITS = {"hidden_size": 4_096, "batch_size": 1_024, "epochs": 1_000}
MEMORY_NOTE = "the most this server trains (it bounds memory); `mlknobs train` takes more"
# Shown first, in this order; the others under "more settings".
PRIMARY = ("hidden_size", "learning_rate", "epochs", "batch_size", "loss", "schedule", "momentum",
           "dropout", "dataset")
AUGMENT = "augment"


def allowed_range(name: str) -> Range | None:
    """The config's range for a numeric setting, tightened by SERVER_LIMITS (and the cores here)."""
    allowed = SETTING_RANGES.get(name)
    high = {**SERVER_LIMITS, "threads": max_threads()}.get(name)
    if allowed is None or high is None or (allowed.high is not None and allowed.high <= high):
        return allowed
    return Range(allowed.low, high, integer=allowed.integer, low_open=allowed.low_open)


def describe(flags: dict[str, tuple[str, str]] | None = None) -> dict:
    """What GET /api/train/settings answers: {"settings": [...], "augment": {...}}.

    `flags` maps a setting to its command-line flag and help text (the CLI passes them: the web
    app does not import the CLI).
    """
    flags = flags or {}
    settings = []
    for field in fields(TrainConfig):
        name = field.name
        default = getattr(DEFAULTS, name)
        entry = {"name": name, "default": default, "primary": name in PRIMARY}
        if name in flags:
            entry["flag"], entry["help"] = flags[name]
        allowed = allowed_range(name)
        if name in SETTING_CHOICES:
            entry.update(kind="choice", choices=list(SETTING_CHOICES[name]))
        elif isinstance(default, bool):
            entry["kind"] = "boolean"
        elif allowed is not None:
            entry.update(kind="integer" if allowed.integer else "number", min=_finite(allowed.low),
                         max=_finite(allowed.high), min_open=allowed.low_open, max_open=allowed.high_open,
                         limits=allowed.describe())
            if name in SERVER_LIMITS:
                entry["server_limit"] = SERVER_LIMITS[name]
        else:                                   # a setting this module does not know how to offer
            continue
        settings.append(entry)
    settings.sort(key=lambda e: (not e["primary"], PRIMARY.index(e["name"]) if e["primary"] else 0))
    augment = {"name": AUGMENT, "kind": "boolean", "default": False, "primary": True, "sets": AUGMENT_DEFAULTS}
    if AUGMENT in flags:
        augment["flag"], augment["help"] = flags[AUGMENT]
    return {"settings": settings, "augment": augment, "server_limits": SERVER_LIMITS, "memory_note": MEMORY_NOTE}


def parse(body) -> TrainConfig:
    """The settings of a POST /api/train body (a JSON object); raises SettingsError naming each bad one.

    Missing settings take their defaults; `augment: true` sets AUGMENT_DEFAULTS for the
    distortions not given. Beyond the config's own checks, SERVER_LIMITS bound the sizes.
    """
    if not isinstance(body, dict):
        raise SettingsError([(None, "the body must be a JSON object of settings, such as {\"hidden_size\": 32}")])
    known = {field.name for field in fields(TrainConfig)}
    unknown = sorted(str(key) for key in body if key not in known and key != AUGMENT)
    if unknown:
        shown = ", ".join(one_line(name, 40) for name in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise SettingsError([(one_line(unknown[0], 40),
                              f"unknown setting: {shown} (known: {', '.join(sorted(known))}, {AUGMENT})")])
    settings = {key: value for key, value in body.items() if key != AUGMENT}
    augment = body.get(AUGMENT, False)
    if not isinstance(augment, bool):
        raise SettingsError([(AUGMENT, f"{AUGMENT} must be true or false")])
    if augment:
        settings = {**AUGMENT_DEFAULTS, **settings}
    problems = []                              # first the server's own bounds, stated as this server's
    for name in (*SERVER_LIMITS, "threads"):
        allowed = allowed_range(name)
        if name in settings and not allowed.admits(settings[name]):
            note = "the cores this server may use" if name == "threads" else MEMORY_NOTE
            problems.append((name, f"{{{name}}} must be {allowed.describe()} here ({note})"))
    if problems:
        raise SettingsError(problems)
    return TrainConfig(**settings)             # the config's own checks: types, ranges, choices


def _finite(number):
    return None if number is None or (isinstance(number, float) and not math.isfinite(number)) else number
