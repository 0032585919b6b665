"""What `mlknobs sweep`'s options need at start-up, apart from the sweep package so that building
the command line (and `mlknobs --help`) imports no executor, worker or hashing code."""

from __future__ import annotations

from mlknobs.config import DEFAULTS

BACKEND_NAMES = ("local", "dask")                   # training.sweep.executors.BACKENDS holds exactly these
SWEEP_DEFAULTS = DEFAULTS.replace(val_size=10_000)  # a sweep ranks its runs on a validation split
