"""One range checker for the numbers a user, a file or the environment hands us (no NumPy).

A `Range` says which numbers a value may take (whole or real, either end closed, open or absent)
and says so in words; every setting, environment variable and saved number is checked with one:

    >>> Range(0, 20, integer=True).problem(5000, "MLKNOBS_DOWNLOAD_RETRIES")
    'MLKNOBS_DOWNLOAD_RETRIES must be a whole number from 0 to 20'
    >>> Range(0, 600, low_open=True).describe()
    'a number > 0 and at most 600'

A value of the wrong type (a bool, text, None), NaN and infinity are outside every range: a
comparison with NaN is False, and no setting or saved number means anything when infinite. The
sentence never shows the value: each caller adds it in its own way (a bounded repr, a placeholder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """The numbers from `low` to `high`; None means no limit on that side, *_open excludes the end."""

    low: float | None = None
    high: float | None = None
    integer: bool = False        # whole numbers only (an int, never a float such as 2.0)
    low_open: bool = False       # low itself is excluded
    high_open: bool = False      # high itself is excluded

    def admits(self, value) -> bool:
        """Is `value` a number of the right kind, finite, and within the limits?"""
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def problem(self, value, name: str) -> str | None:
        """None if the value is admitted, else '<name> must be <describe()>'."""
        return None if self.admits(value) else f"{name} must be {self.describe()}"

    def describe(self) -> str:
        """The range in words: 'a whole number from 1 to 65,536', 'a number >= 0', 'a positive number'."""
        kind = "whole number" if self.integer else "number"
        low, high = _plain(self.low), _plain(self.high)
        if self.low == 0 and self.low_open and self.high is None:
            return f"a positive {kind}"
        if self.low is not None and self.high is not None:
            if self.low_open:
                words = f"> {low} and {'below' if self.high_open else 'at most'} {high}"
            else:
                words = f"from {low} to {'below ' if self.high_open else ''}{high}"
        elif self.low is not None:
            words = f"{'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            words = f"{'<' if self.high_open else '<='} {high}"
        else:
            return f"a {kind}"
        return f"a {kind} {words}"


def _plain(number: float | None) -> str:
    """65536 as '65,536', 600.0 as '600', 0.5 as '0.5', the largest float as '1.79769e+308'."""
    if number is None:
        return ""
    if isinstance(number, int):
        return f"{number:,}"
    if math.isfinite(number) and number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:g}"
