"""Learning-rate schedules: the learning rate for each optimizer step, as a table of small functions.

Each takes the peak learning rate and the progress t through training (0 at the first step, just
below 1 at the last) and returns the step's learning rate. A new schedule is one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mlknobs.config import SCHEDULE_NAMES


def constant(peak: float, t: float) -> float:
    return peak


def step(peak: float, t: float) -> float:
    """Divide by 10 at half-way and again at three quarters."""
    return peak * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)


def cosine(peak: float, t: float) -> float:
    """Half a cosine from the peak down to 0."""
    return peak * 0.5 * (1 + math.cos(math.pi * t))


ONE_CYCLE_WARMUP = 0.3


def one_cycle(peak: float, t: float) -> float:
    """Warm up from peak/25 to the peak over the first 30 %, then anneal to peak/25e4 (as PyTorch's OneCycleLR)."""
    start, end = peak / 25, peak / 25e4
    if t < ONE_CYCLE_WARMUP:
        return start + (peak - start) * 0.5 * (1 - math.cos(math.pi * t / ONE_CYCLE_WARMUP))
    u = (t - ONE_CYCLE_WARMUP) / (1 - ONE_CYCLE_WARMUP)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * u))


SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "constant": constant,
    "step": step,
    "cosine": cosine,
    "one-cycle": one_cycle,
}
assert tuple(SCHEDULES) == SCHEDULE_NAMES, "config.SCHEDULE_NAMES must list exactly the registered schedules"

# Progress at which each schedule reaches its peak and starts to anneal: before it, a validation
# score is still climbing with the learning rate, so early stopping does not count those epochs.
PEAK_AT: dict[str, float] = {"constant": 0.0, "step": 0.0, "cosine": 0.0, "one-cycle": ONE_CYCLE_WARMUP}


def learning_rate_at(schedule: str, peak: float, step: int, total_steps: int) -> float:
    """The learning rate for optimizer step `step` (0-based) of `total_steps`."""
    return SCHEDULES[schedule](peak, step / max(total_steps, 1))
