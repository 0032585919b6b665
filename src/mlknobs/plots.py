"""Pictures of what a trained network learned: its hidden units, its learning curves, its confusions, its mistakes.

Each `*_figure` function returns the picture as bytes (PNG, SVG or PDF) and never touches the
disk; `write_picture` stores them atomically. Charts use matplotlib, an optional extra, imported
only when a picture is drawn. Figures are built with `matplotlib.figure.Figure` on the Agg canvas
directly, so the global pyplot backend of a program that imports mlknobs is left alone.

Every figure has a fixed size in inches at `DPI` dots per inch (no tight bounding box), so the
size of a picture depends only on what it shows, not on the length of its labels.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from mlknobs.atomic import atomic_write
from mlknobs.data import Split
from mlknobs.errors import MlknobsError
from mlknobs.evaluate import confusion_matrix
from mlknobs.modelfile import Model

DPI = 100
PICTURE_FORMATS = ("png", "svg", "pdf")
INSTALL_HINT = 'plots need matplotlib, an optional extra: pip install "mlknobs[plot]"'

# Weight tiles: one inch per unit, plus room for the two-line title.
TILE_INCHES = 1.0
TITLE_INCHES = 1.0
# Mistake tiles are wider and taller: their captions name two classes and a confidence.
MISTAKE_COLUMNS = 8
MISTAKE_TILE_INCHES = (1.4, 1.75)
HISTORY_INCHES = (11.0, 4.5)
CONFUSION_INCHES = (8.5, 7.5)


class PlotError(MlknobsError):
    """A picture cannot be drawn or written (missing extra, nothing to show, unwritable path)."""


# --- files ----------------------------------------------------------------------------------------

def picture_format(path: Path) -> str:
    """The format a picture is written in, from its suffix: .png, .svg or .pdf."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PICTURE_FORMATS:
        raise PlotError(f"cannot tell the picture type of {path}: use a .png, .svg or .pdf name")
    return suffix


def check_writable(path: Path) -> None:
    """Fail early, before minutes of work, if `path` could not be written."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise PlotError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise PlotError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PlotError(f"cannot write {path}: folder {folder} is not writable")


def write_picture(path: Path, data: bytes) -> None:
    """Store rendered bytes atomically; a reader never sees half a picture."""
    check_writable(path)
    try:
        atomic_write(Path(path), lambda f: f.write(data))
    except OSError as e:
        raise PlotError(f"cannot write {path}: {e.strerror or e}") from e


def _matplotlib():
    """(Figure class, colors module, ticker module), or a PlotError saying how to install matplotlib."""
    try:
        import matplotlib  # noqa: F401  (imported first so a missing package fails here, not deeper)
        from matplotlib import colors, ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotError(INSTALL_HINT) from e

    def new_figure(width: float, height: float):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    return new_figure, colors, ticker


def require_matplotlib() -> None:
    """Raise the install hint now if matplotlib is missing (before loading models and data)."""
    _matplotlib()


def _render(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def _grid(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) for `count` tiles: square-ish unless the column count is given."""
    columns = columns or math.ceil(math.sqrt(count))
    columns = min(columns, count)
    return math.ceil(count / columns), columns


def _describe(model: Model) -> str:
    loss = model.config.loss
    return f"{model.dataset}, 784-{model.params.hidden_size}-10, {loss}"


# --- weights --------------------------------------------------------------------------------------

def weights_figure(model: Model, name: str, max_units: int = 100, shared_scale: bool = False,
                   fmt: str = "png") -> bytes:
    """Every hidden unit's 784 input weights as a 28x28 tile: what pattern of pixels turns it on.

    Red pixels push the unit towards 1 when they are bright, blue ones push it towards 0. Each tile
    is scaled to its own largest |weight| by default: units differ several-fold in strength, and
    on one shared scale the weak ones fade to white although their pattern is just as clear. With
    `shared_scale` all tiles use one scale (and a colour bar), to compare strengths instead.
    """
    new_figure, colors, _ = _matplotlib()
    w1 = model.params.w1                                     # (784, H)
    hidden = w1.shape[1]
    shown = min(hidden, max_units)
    tiles = w1[:, :shown].T.reshape(shown, 28, 28)           # (U, 784) -> (U, 28, 28)
    limits = np.abs(tiles).reshape(shown, -1).max(axis=1)    # (U,)
    if shared_scale:
        limits[:] = limits.max()
    limits = np.maximum(limits, np.finfo(np.float32).tiny)   # an all-zero unit still draws

    rows, columns = _grid(shown)
    colourbar_inches = 1.0 if shared_scale else 0.0
    fig = new_figure(max(8.0, columns * TILE_INCHES) + colourbar_inches, rows * TILE_INCHES + TITLE_INCHES)
    axes = fig.subplots(rows, columns, squeeze=False)
    image = None
    for unit, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if unit >= shown:
            continue
        image = ax.imshow(tiles[unit], cmap="RdBu_r", norm=colors.Normalize(-limits[unit], limits[unit]),
                          interpolation="nearest")
        ax.set_title(f"unit {unit}", fontsize=7, pad=2)
    which = f"all {hidden} hidden units" if shown == hidden else f"the first {shown} of {hidden} hidden units"
    scale = "one colour scale for all units" if shared_scale else "each tile scaled to its own largest |weight|"
    fig.suptitle(f"What each hidden unit looks for: input weights of {which}\n"
                 f"{name}: {_describe(model)}; {scale}\n"
                 f"red: a bright pixel there turns the unit on, blue: turns it off, white: no effect",
                 fontsize=9)
    if shared_scale and image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    return _render(fig, fmt)


# --- history --------------------------------------------------------------------------------------

def history_figure(model: Model, name: str, fmt: str = "png") -> bytes:
    """Loss and accuracy per epoch for the training and validation sets, and the final test result."""
    if not model.history:
        raise PlotError(f"{name} has no training history to plot (no finished epoch was recorded)")
    new_figure, _, ticker = _matplotlib()
    history = model.history
    epochs = [entry["epoch"] for entry in history]
    fig = new_figure(*HISTORY_INCHES)
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    # The test set is measured once, after training, on the weights that were kept: the best
    # validation epoch's under early stopping, otherwise the last epoch's.
    test_epoch = model.results.get("best_epoch") or epochs[-1]
    kept = f"weights of epoch {test_epoch}, the best on validation" if model.results.get("best_epoch") \
        else "final weights"
    panels = ((loss_ax, "loss", f"loss ({model.config.loss}, lower is better)", 1.0, "{:.4f}"),
              (accuracy_ax, "accuracy", "accuracy (%, higher is better)", 100.0, "{:.2f} %"))
    for ax, metric, ylabel, factor, label_format in panels:
        train = [entry[f"train_{metric}"] * factor for entry in history]
        ax.plot(epochs, train, "o-", color="tab:blue", label="training (mean over the epoch)")
        if all(f"val_{metric}" in entry for entry in history):
            val = [entry[f"val_{metric}"] * factor for entry in history]
            ax.plot(epochs, val, "s-", color="tab:orange", label="validation (after the epoch)")
        if f"test_{metric}" in model.results:
            test = model.results[f"test_{metric}"] * factor
            ax.plot([test_epoch], [test], "*", color="tab:red", markersize=14,
                    label=f"test {label_format.format(test)} ({kept})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlim(0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if model.results.get("best_epoch"):
        for ax in (loss_ax, accuracy_ax):
            ax.axvline(model.results["best_epoch"], color="gray", linestyle=":", linewidth=1)
    loss_ax.set_title("loss")
    accuracy_ax.set_title("accuracy")
    fig.suptitle(f"Training history of {name}  ({_describe(model)}, {len(history)} epochs)")
    return _render(fig, fmt)


# --- confusion ------------------------------------------------------------------------------------

def confusion_figure(model: Model, name: str, test: Split, fmt: str = "png") -> bytes:
    """The confusion matrix on `test` (rows: true class, columns: predicted) with every count written in.

    The diagonal (right answers, ~1000 each) and the mistakes (a handful each) differ a hundredfold,
    so they get separate colour scales: greens for the diagonal, reds for the mistakes, each scaled
    to its own largest count. On one shared scale every mistake would look equally white.
    """
    new_figure, colors, _ = _matplotlib()
    class_names = model.class_names
    n = len(class_names)
    predictions = model.predict_proba(test.images).argmax(axis=1)          # (N,)
    confusion = confusion_matrix(test.labels, predictions, n)              # (n, n)
    diagonal = np.eye(n, dtype=bool)
    right = np.ma.masked_where(~diagonal, confusion)
    wrong = np.ma.masked_where(diagonal | (confusion == 0), confusion)   # zero cells stay white
    wrong_max = max(int(wrong.max() or 0), 1)

    fig = new_figure(*CONFUSION_INCHES)
    ax = fig.subplots()
    # The greens top out at 70 % of their darkest shade so the bold white counts stay readable.
    ax.imshow(right, cmap="Greens", norm=colors.Normalize(0, max(int(right.max()), 1) / 0.7))
    wrong_image = ax.imshow(wrong, cmap="Reds", norm=colors.Normalize(0, wrong_max))
    for (true, predicted), count in np.ndenumerate(confusion):
        if count == 0:
            continue
        on_diagonal = bool(diagonal[true, predicted])
        dark = on_diagonal or count > 0.6 * wrong_max
        ax.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                color="white" if dark else "black", fontweight="bold" if on_diagonal else "normal")
    rotate = max(len(c) for c in class_names) > 2
    ax.set_xticks(range(n), class_names, rotation=40 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    # Recall per true class beside each row: how often that class is recognised.
    totals = confusion.sum(axis=1)
    recall_ax = ax.secondary_yaxis("right")
    recall_ax.set_yticks(range(n), [f"{100 * confusion[i, i] / t:.1f} %" if t else "-"
                                    for i, t in enumerate(totals)])
    recall_ax.set_ylabel("recognised (recall)")
    fig.colorbar(wrong_image, ax=ax, shrink=0.7, label="mistakes (off-diagonal count)")
    total, correct = int(confusion.sum()), int(np.trace(confusion))
    ax.set_title(f"Confusion matrix of {name} on the {model.dataset} test set\n"
                 f"{correct:,} of {total:,} right ({100 * correct / max(total, 1):.2f} %); "
                 f"green: right answers, red: mistakes", fontsize=10)
    return _render(fig, fmt)


# --- mistakes -------------------------------------------------------------------------------------

def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the misclassified rows, the most confident (highest predicted probability) first."""
    predictions = probabilities.argmax(axis=1)                             # (N,)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")]


def mistakes_figure(model: Model, name: str, test: Split, count: int = 40, fmt: str = "png") -> bytes:
    """The test images the model gets wrong, most confident first, captioned with true and predicted class."""
    new_figure, _, _ = _matplotlib()
    probabilities = model.predict_proba(test.images)                       # (N, 10)
    order = most_confident_mistakes(probabilities, test.labels)
    if len(order) == 0:
        raise PlotError(f"{name} classifies every {model.dataset} test image correctly; no mistakes to show")
    shown = order[:count]
    class_names = model.class_names
    rows, columns = _grid(len(shown), MISTAKE_COLUMNS)
    width, height = MISTAKE_TILE_INCHES
    fig = new_figure(max(6.0, columns * width), rows * height + TITLE_INCHES)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, shown):
        predicted = int(probabilities[i].argmax())
        ax.imshow(test.images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"true {class_names[test.labels[i]]}\npred {class_names[predicted]}\n"
                     f"{100 * probabilities[i, predicted]:.1f} % sure", fontsize=8, pad=3)
    fig.suptitle(f"Mistakes of {name} ({_describe(model)}): {len(order):,} of {len(test):,} test images "
                 f"are misclassified;\nhere are the {len(shown)} the model is surest about, surest first "
                 f"(true class, predicted class and its probability)", fontsize=10)
    return _render(fig, fmt)
