"""The kinds of picture `mlknobs plot` draws, as a table (`DRAW`), and how a picture reaches the disk.

Each kind's `*_figure` function returns the picture as bytes (PNG, SVG or PDF) and never touches
the disk; `write_picture` stores them atomically. The figures live by what they show:
viz/model_plots.py (weights, history, confusion, mistakes), viz/augment.py, viz/sweep.py; what
they share (matplotlib, an optional extra imported only when a picture is drawn) in viz/figures.py.
A new kind is one entry in DRAW and its description in viz.PLOT_KINDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlknobs.data.splits import Split
from mlknobs.errors import PlotError
from mlknobs.files import atomic_write, check_writable
from mlknobs.nn.model import Model
from mlknobs.viz import PLOT_KINDS
from mlknobs.viz.activations import activations_figure
from mlknobs.viz.augment import augment_figure
from mlknobs.viz.figures import require_matplotlib
from mlknobs.viz.model_plots import (
    confusion_figure,
    history_figure,
    mistakes_figure,
    most_confident_mistakes,
    weights_figure,
)
from mlknobs.viz.sweep import sweep_figure

__all__ = ["DRAW", "PICTURE_FORMATS", "PlotRequest", "augment_figure", "confusion_figure", "history_figure",
           "mistakes_figure", "most_confident_mistakes", "picture_format", "require_matplotlib", "sweep_figure",
           "weights_figure", "write_picture"]

PICTURE_FORMATS = ("png", "svg", "pdf")


def picture_format(path: Path) -> str:
    """The format a picture is written in, from its suffix: .png, .svg or .pdf."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PICTURE_FORMATS:
        raise PlotError(f"cannot tell the picture type of {path}: use a .png, .svg or .pdf name")
    return suffix


def write_picture(path: Path, data: bytes) -> None:
    """Store rendered bytes atomically; a reader never sees half a picture."""
    check_writable(path)
    try:
        atomic_write(Path(path), lambda f: f.write(data))
    except OSError as e:
        raise PlotError(f"cannot write {path}: {e.strerror or e}") from e


@dataclass(frozen=True)
class PlotRequest:
    """Everything a kind of picture may use; each kind reads what it needs."""

    model: Model | None             # None for the kind that reads a sweep folder
    name: str                       # how the model (or sweep folder) is called in titles
    fmt: str = "png"
    test: Split | None = None       # the model's test split, for the kinds that need it
    max_units: int = 100
    shared_scale: bool = False
    count: int = 40
    train: Split | None = None      # the model's training split, for the kinds that need it
    distortions: dict | None = None
    distortions_source: str = ""
    runs: list[dict] | None = None   # a sweep's records, for the kind that reads a sweep folder (no model)
    swept: dict | None = None        # the sweep's swept settings -> their values


DRAW = {
    "weights": lambda r: weights_figure(r.model, r.name, r.max_units, r.shared_scale, r.fmt),
    "history": lambda r: history_figure(r.model, r.name, r.fmt),
    "confusion": lambda r: confusion_figure(r.model, r.name, r.test, r.fmt),
    "mistakes": lambda r: mistakes_figure(r.model, r.name, r.test, r.count, r.fmt),
    "augment": lambda r: augment_figure(r.train.images, r.distortions, r.distortions_source, fmt=r.fmt),
    "activations": lambda r: activations_figure(r.model, r.name, r.test, r.fmt),
    "sweep": lambda r: sweep_figure(r.runs, r.swept, r.name, r.fmt),
}
assert DRAW.keys() == PLOT_KINDS.keys(), "viz.PLOT_KINDS must describe exactly the kinds drawn here"
