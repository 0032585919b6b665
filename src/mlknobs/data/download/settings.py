"""How patient a download is: timeouts, retries, backoff, deadline and minimum speed, with their limits.

The defaults suit a slow link; the MLKNOBS_DOWNLOAD_* variables (ENV_VARIABLES) adjust them, and
every value, from the environment or from code, is checked against SETTING_RANGES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from mlknobs.bounds import Range
from mlknobs.errors import DownloadSettingsError

MAX_BACKOFF_WAIT = 60.0       # seconds: the longest single wait between two attempts

# Upper bounds keep every wait finite and every product of them representable: without them
# MLKNOBS_DOWNLOAD_RETRIES=5000 made `backoff * 2 ** n` overflow, and a huge backoff slept for years.
SETTING_RANGES = {
    "connect_timeout": Range(0, 600, low_open=True),
    "read_timeout": Range(0, 600, low_open=True),
    "retries": Range(0, 20, integer=True),
    "backoff": Range(0, 60),
    "deadline": Range(0, 24 * 3600, low_open=True),
    "speed_limit": Range(0, 1 << 30, integer=True),
    "speed_time": Range(0, 3600, low_open=True),
}

# Environment variable -> the settings it sets (the timeout sets both the connect and the read one).
ENV_VARIABLES = {
    "MLKNOBS_DOWNLOAD_TIMEOUT": ("connect_timeout", "read_timeout"),
    "MLKNOBS_DOWNLOAD_RETRIES": ("retries",),
    "MLKNOBS_DOWNLOAD_BACKOFF": ("backoff",),
    "MLKNOBS_DOWNLOAD_DEADLINE": ("deadline",),
    "MLKNOBS_DOWNLOAD_SPEED_LIMIT": ("speed_limit",),
    "MLKNOBS_DOWNLOAD_SPEED_TIME": ("speed_time",),
}


@dataclass(frozen=True)
class DownloadSettings:
    connect_timeout: float = 10.0   # seconds to establish a connection
    read_timeout: float = 30.0      # seconds of silence allowed mid-transfer
    retries: int = 3                # further attempts per mirror after a connection error or 5xx
    backoff: float = 1.0            # first wait before a retry, doubled each time (each wait <= 60 s)
    # Seconds one file may take from one mirror, retries and waits included; then the next mirror.
    # 300 s lets a 100 KB/s link fetch the largest official file (Fashion-MNIST's 26.4 MB training
    # images, 264 s; MNIST's 9.9 MB takes 99 s), while a mirror that trickles just above the speed
    # limit is dropped after 5 minutes instead of hours.
    deadline: float = 300.0
    # A transfer slower than speed_limit bytes/s over speed_time seconds is abandoned (0: no limit),
    # as with curl --speed-limit 1024 --speed-time 30: a dead or trickling mirror goes in 30 s.
    speed_limit: int = 1024
    speed_time: float = 30.0

    def __post_init__(self) -> None:
        for field in fields(self):
            allowed, value = SETTING_RANGES[field.name], getattr(self, field.name)
            if not allowed.admits(value):
                raise DownloadSettingsError(field.name, value, allowed.describe())

    @classmethod
    def from_env(cls) -> DownloadSettings:
        """The defaults, adjusted by the MLKNOBS_DOWNLOAD_* variables in ENV_VARIABLES when set.

        A bad value raises DownloadSettingsError (a ValueError) naming the variable, e.g.
        "MLKNOBS_DOWNLOAD_RETRIES must be a whole number from 0 to 20, got '5000'".
        """
        settings = {}
        for variable, names in ENV_VARIABLES.items():
            value = _env_number(variable, SETTING_RANGES[names[0]])
            if value is not None:
                settings.update(dict.fromkeys(names, value))
        return cls(**settings)


def _env_number(name: str, allowed: Range) -> float | int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text) if allowed.integer else float(text)
    except ValueError:   # also int("9" * 5000): too many digits to convert
        value = None
    if value is None or not allowed.admits(value):
        raise DownloadSettingsError(name, text, allowed.describe())
    return value


def backoff_wait(settings: DownloadSettings, failures: int) -> float:
    """Seconds to wait after the n-th failure: backoff, doubled each time, at most MAX_BACKOFF_WAIT."""
    return min(MAX_BACKOFF_WAIT, settings.backoff * 2.0 ** min(failures - 1, 64))
