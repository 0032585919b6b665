"""The range test's own settings (lr-find's options): defaults and limits, checked in one place.

No NumPy here, so that `mlknobs lr-find --help` shows the limits without paying for it; the test
itself is training/lr_find.py.

Why the limits: time grows with the steps (fastai takes 100; 10,000 batches of 128 are 21 epochs of
MNIST), and rates outside 1e-10..1e6 say nothing about this network (an update of 1e-10 x a
gradient vanishes in float32 weights; the loss blows up long before 1e6, at about 10). Within them
every rate of the curve, and so every suggestion, is a finite positive number.
"""

from __future__ import annotations

from mlknobs.bounds import Range

START_LR, END_LR, STEPS = 1e-5, 10.0, 200       # the defaults
MIN_STEPS, MAX_STEPS = 10, 10_000
MIN_LR, MAX_LR = 1e-10, 1e6
STEPS_RANGE = Range(MIN_STEPS, MAX_STEPS, integer=True)
LR_RANGE = Range(MIN_LR, MAX_LR)


def problems(start_lr: float, end_lr: float, steps: int) -> list[tuple[str, str]]:
    """(setting, text) for each option out of its range, texts naming settings as {placeholders}
    (the form SettingsError takes); empty if the range test may run."""
    found = [(name, f"{problem} (got {value!r:.40})") for name, value, bounds in
             (("start_lr", start_lr, LR_RANGE), ("end_lr", end_lr, LR_RANGE), ("steps", steps, STEPS_RANGE))
             if (problem := bounds.problem(value, f"{{{name}}}"))]
    if not found and not start_lr < end_lr:
        found.append(("start_lr", f"the learning rates must rise from {{start_lr}} to {{end_lr}} "
                                  f"(got {start_lr:g} to {end_lr:g})"))
    return found
