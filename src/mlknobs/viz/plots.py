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
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mlknobs.data.splits import Split
from mlknobs.errors import PlotError
from mlknobs.files import atomic_write, check_writable
from mlknobs.nn.evaluate import confusion_matrix
from mlknobs.nn.model import Model
from mlknobs.viz import PLOT_KINDS
from mlknobs.viz.tiles import tile_grid

DPI = 100
PICTURE_FORMATS = ("png", "svg", "pdf")
INSTALL_HINT = 'plots need matplotlib, an optional extra: pip install "mlknobs[plot]"'

# Tile grids (weights, mistakes) are one image of 28x28 tiles with blank space around each for
# its caption, drawn on a single Axes: a separate Axes per tile makes matplotlib's layout take
# seconds for a hundred tiles. Sizes are in tile pixels (one pixel = one 28x28 image pixel).
WEIGHT_TILE_INCHES = 1.0              # width of one weight tile's cell
WEIGHT_CELL = (28 + 4, 28 + 9)        # (width, height) in tile pixels: a gap, and a one-line caption above
MISTAKE_COLUMNS = 8
MISTAKE_TILE_INCHES = 1.1             # a digit; its cell adds room for a three-line caption
MISTAKE_CELL = (28 + 8, 28 + 14)
TITLE_INCHES = 0.8                    # room for a grid picture's title
MARGIN_INCHES = 0.1
MIN_GRID_PICTURE_INCHES = 8.0         # narrower pictures would cut their titles
HISTORY_INCHES = (11.0, 4.5)
CONFUSION_INCHES = (8.5, 7.5)


# --- files ----------------------------------------------------------------------------------------

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


def _matplotlib() -> SimpleNamespace:
    """The parts of matplotlib the pictures use, or a PlotError saying how to install it."""
    try:
        import matplotlib  # noqa: F401  (imported first so a missing package fails here, not deeper)
        from matplotlib import colormaps, colors, ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.cm import ScalarMappable
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotError(INSTALL_HINT) from e

    def new_figure(width: float, height: float, layout: str | None = "constrained"):
        # Whole pixels, so a picture's size is exactly what its layout says.
        fig = Figure(figsize=(round(width * DPI) / DPI, round(height * DPI) / DPI), dpi=DPI, layout=layout)
        FigureCanvasAgg(fig)
        return fig

    return SimpleNamespace(new_figure=new_figure, colormaps=colormaps, colors=colors, ticker=ticker,
                           ScalarMappable=ScalarMappable)


def require_matplotlib() -> None:
    """Raise the install hint now if matplotlib is missing (before loading models and data)."""
    _matplotlib()


def _render(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def tile_mosaic(tiles: np.ndarray, columns: int, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Lay tiles (n, 28, 28) out in rows of `columns` cells of `cell` = (width, height) pixels.

    Each tile sits at the bottom centre of its cell; the blank rows above it hold its caption.
    Blank pixels are NaN, so a colour map paints them as its "bad" colour (the background).
    Returns the mosaic and each caption's anchor (n, 2) as (x, y): the middle of the tile's top
    edge in imshow's pixel coordinates.
    """
    width, height = cell
    mosaic, origins = tile_grid(tiles.astype(np.float32), columns, cell, offset=((width - 28) // 2, height - 28))
    # imshow centres pixel (i, j) on (j, i), so a tile's top edge is half a pixel above its first row.
    return mosaic, origins + np.array([13.5, -0.5])


def _mosaic_axes(new_figure, mosaic: np.ndarray, inches_per_pixel: float, right_inches: float = 0.0):
    """A figure holding one Axes sized so each mosaic pixel is `inches_per_pixel`, below room for a title."""
    grid_height, grid_width = (size * inches_per_pixel for size in mosaic.shape)
    width = max(MIN_GRID_PICTURE_INCHES, grid_width + 2 * MARGIN_INCHES) + right_inches
    height = grid_height + TITLE_INCHES + MARGIN_INCHES
    fig = new_figure(width, height, layout=None)
    width, height = fig.get_size_inches()
    left = (width - right_inches - grid_width) / 2
    ax = fig.add_axes((left / width, MARGIN_INCHES / height, grid_width / width, grid_height / height))
    ax.set_axis_off()
    return fig, ax


def _grid_title(fig, text: str) -> None:
    fig.suptitle(text, fontsize=9.5, y=1 - MARGIN_INCHES / fig.get_size_inches()[1], va="top")


def _shorten(name: str, limit: int = 60) -> str:
    """A file name short enough for a title line: the middle gives way to an ellipsis."""
    return name if len(name) <= limit else name[:limit // 2 - 1] + "…" + name[-(limit // 2):]


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
    mpl = _matplotlib()
    w1 = model.params.w1                                      # (784, H)
    hidden = w1.shape[1]
    shown = min(hidden, max_units)
    tiles = w1[:, :shown].T.reshape(shown, 28, 28)            # (U, 784) -> (U, 28, 28)
    limits = np.abs(tiles).max(axis=(1, 2))                   # (U,)
    if shared_scale:
        limits[:] = limits.max()
    limits = np.maximum(limits, np.finfo(np.float32).tiny)    # an all-zero unit still draws
    mosaic, anchors = tile_mosaic(tiles / limits[:, None, None], math.ceil(math.sqrt(shown)), WEIGHT_CELL)
    colourbar_inches = 1.2 if shared_scale else 0.0
    fig, ax = _mosaic_axes(mpl.new_figure, mosaic, WEIGHT_TILE_INCHES / WEIGHT_CELL[0], colourbar_inches)
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    for unit, (x, y) in enumerate(anchors):
        ax.text(x, y - 1, f"unit {unit}", ha="center", va="bottom", fontsize=7)
    if shared_scale:
        grid, width = ax.get_position(), fig.get_size_inches()[0]
        bar = fig.add_axes((grid.x1 + 0.3 / width, grid.y0 + grid.height / 4, 0.2 / width, grid.height / 2))
        weights = mpl.ScalarMappable(mpl.colors.Normalize(-limits[0], limits[0]), cmap)
        fig.colorbar(weights, cax=bar, label="weight")
    which = f"all {hidden} hidden units" if shown == hidden else f"the first {shown} of {hidden} hidden units"
    scale = "one colour scale for all units" if shared_scale else "each tile scaled to its own largest |weight|"
    _grid_title(fig, f"What each hidden unit looks for: input weights of {which}\n"
                     f"{name}: {_describe(model)}; {scale}\n"
                     f"red: a bright pixel there turns the unit on, blue: turns it off, white: no effect")
    return _render(fig, fmt)


# --- history --------------------------------------------------------------------------------------

def history_figure(model: Model, name: str, fmt: str = "png") -> bytes:
    """Loss and accuracy per epoch for the training and validation sets, and the final test result."""
    if not model.history:
        raise PlotError(f"{name} has no training history to plot (no finished epoch was recorded)")
    mpl = _matplotlib()
    history = model.history
    epochs = [entry["epoch"] for entry in history]
    fig = mpl.new_figure(*HISTORY_INCHES)
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
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
    if model.results.get("best_epoch"):
        for ax in (loss_ax, accuracy_ax):
            ax.axvline(model.results["best_epoch"], color="gray", linestyle=":", linewidth=1,
                       label="kept epoch (best on validation)" if ax is loss_ax else None)
    # One legend under both panels: inside a panel it would hide points or the kept-epoch line.
    handles, labels = loss_ax.get_legend_handles_labels()
    accuracy_handles, accuracy_labels = accuracy_ax.get_legend_handles_labels()
    for handle, label in zip(accuracy_handles, accuracy_labels):
        if label.startswith("test "):           # the test accuracy, beside the test loss
            handles.append(handle)
            labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=8, frameon=False)
    loss_ax.set_title("loss")
    accuracy_ax.set_title("accuracy")
    ran = (f"stopped early after {len(history)} of {model.config.epochs} epochs" if model.results.get("stopped_early")
           else f"{len(history)} epoch{'s' if len(history) != 1 else ''}")
    fig.suptitle(f"Training history of {name}  ({_describe(model)}, {ran})")
    return _render(fig, fmt)


# --- confusion ------------------------------------------------------------------------------------

def confusion_figure(model: Model, name: str, test: Split, fmt: str = "png") -> bytes:
    """The confusion matrix on `test` (rows: true class, columns: predicted) with every count written in.

    The diagonal (right answers, ~1000 each) and the mistakes (a handful each) differ a hundredfold,
    so they get separate colour scales: greens for the diagonal, reds for the mistakes, each scaled
    to its own largest count. On one shared scale every mistake would look equally white.
    """
    mpl = _matplotlib()
    class_names = model.class_names
    n = len(class_names)
    predictions = model.predict_proba(test.images).argmax(axis=1)          # (N,)
    confusion = confusion_matrix(test.labels, predictions, n)              # (n, n)
    diagonal = np.eye(n, dtype=bool)
    right = np.ma.masked_where(~diagonal, confusion)
    wrong = np.ma.masked_where(diagonal | (confusion == 0), confusion)   # zero cells stay white
    wrong_max = max(int(wrong.max() or 0), 1)

    fig = mpl.new_figure(*CONFUSION_INCHES)
    ax = fig.subplots()
    # The greens top out at 70 % of their darkest shade so the bold white counts stay readable.
    ax.imshow(right, cmap="Greens", norm=mpl.colors.Normalize(0, max(int(right.max()), 1) / 0.7))
    wrong_image = ax.imshow(wrong, cmap="Reds", norm=mpl.colors.Normalize(0, wrong_max))
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
    fig.colorbar(wrong_image, ax=ax, shrink=0.7, label="mistakes (off-diagonal count)",
                 ticks=mpl.ticker.MaxNLocator(integer=True))
    total, correct = int(confusion.sum()), int(np.trace(confusion))
    # A figure title, not an axes title: centred over the whole picture, a long model name cannot
    # push it past the left edge.
    fig.suptitle(f"Confusion matrix of {_shorten(name)} on the {model.dataset} test set\n"
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
    mpl = _matplotlib()
    probabilities = model.predict_proba(test.images)                       # (N, 10)
    order = most_confident_mistakes(probabilities, test.labels)
    if len(order) == 0:
        raise PlotError(f"{name} classifies every {model.dataset} test image correctly; no mistakes to show")
    shown = order[:count]
    class_names = model.class_names
    tiles = test.images[shown].reshape(len(shown), 28, 28).astype(np.float32)
    mosaic, anchors = tile_mosaic(tiles, MISTAKE_COLUMNS, MISTAKE_CELL)
    fig, ax = _mosaic_axes(mpl.new_figure, mosaic, MISTAKE_TILE_INCHES / 28)
    # Dark ink on white: MNIST digits as written, Fashion-MNIST items as in the shop photos they came from.
    ax.imshow(mosaic, cmap=mpl.colormaps["gray_r"].with_extremes(bad="white"), vmin=0, vmax=255,
              interpolation="nearest")
    for i, (x, y) in zip(shown, anchors):
        predicted = int(probabilities[i].argmax())
        ax.text(x, y - 1, f"true {class_names[test.labels[i]]}\npred {class_names[predicted]}\n"
                          f"{100 * probabilities[i, predicted]:.1f} % sure", ha="center", va="bottom", fontsize=8)
    _grid_title(fig, f"Mistakes of {name} ({_describe(model)}): {len(order):,} of {len(test):,} test images "
                     f"are misclassified;\nhere are the {len(shown)} the model is surest about, surest first "
                     f"(true class, predicted class and its probability)")
    return _render(fig, fmt)


# --- augment --------------------------------------------------------------------------------------

AUGMENT_ROWS, AUGMENT_COPIES = 8, 7
AUGMENT_CELL = (28 + 6, 28 + 6)


def augment_figure(images: np.ndarray, settings: dict, source: str, seed: int = 0, fmt: str = "png") -> bytes:
    """Training digits (left column) and freshly distorted copies of each: what `--augment` shows the network.

    settings: the distortions (config.DISTORTIONS names), as a model records them or `--augment` sets them.
    """
    from mlknobs.data.augment import Distortions, distort
    from mlknobs.data.batches import augment_rng

    mpl = _matplotlib()
    rng = np.random.default_rng(seed)
    originals = images[rng.choice(len(images), AUGMENT_ROWS, replace=False)]                  # (R, 784)
    copies = [distort(originals, augment_rng(seed, 0, k), Distortions(**settings))
              for k in range(AUGMENT_COPIES)]                                                  # C x (R, 784)
    rows = np.stack([originals, *copies], axis=1).reshape(-1, 28, 28)                          # (R * (1+C), 28, 28)
    mosaic, anchors = tile_mosaic(rows.astype(np.float32), 1 + AUGMENT_COPIES, AUGMENT_CELL)
    fig, ax = _mosaic_axes(mpl.new_figure, mosaic, MISTAKE_TILE_INCHES / 28)
    ax.imshow(mosaic, cmap=mpl.colormaps["gray_r"].with_extremes(bad="white"), vmin=0, vmax=255,
              interpolation="nearest")
    for column, label in ((0, "original"), (1, "distorted copies ->")):
        x, y = anchors[column]
        ax.text(x, y - 1, label, ha="center" if column == 0 else "left", va="bottom", fontsize=8)
    shown = ", ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in settings.items())
    _grid_title(fig, f"What the network is shown with {source}: every epoch draws new distortions\n{shown}")
    return _render(fig, fmt)


# --- sweep ----------------------------------------------------------------------------------------

SWEEP_PANEL_INCHES = (4.6, 4.0)
SWEEP_HEATMAP_INCHES = (8.0, 6.0)
MAX_SWEEP_PANELS_PER_ROW = 3


def _label(setting: str) -> str:
    return setting.replace("_", " ")


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_figure(runs: list[dict], swept: dict[str, list], name: str, fmt: str = "png") -> bytes:
    """Validation accuracy of a sweep's runs against each swept setting.

    runs: results.jsonl records (settings, status, val_accuracy); swept: each setting with more
    than one value -> its values in grid order. Exactly two swept settings give a heatmap of every
    combination; otherwise one panel per swept setting, a line per value of another swept setting
    (not the seed, which is averaged like every setting not on the panel).
    """
    finished = [r for r in runs if r.get("status") == "ok" and r.get("val_accuracy") is not None]
    if not swept:
        raise PlotError(f"{name} sweeps no setting (every setting has one value): nothing to plot against")
    if not finished:
        raise PlotError(f"{name} has no finished run to plot")
    mpl = _matplotlib()
    failed = sum(r.get("status") == "failed" for r in runs)
    best = max(finished, key=lambda r: (r["val_accuracy"], -(r.get("val_loss") or 0.0)))
    title = (f"Sweep {_shorten(name)}: validation accuracy of {len(finished)} runs"
             + (f" ({failed} failed)" if failed else "")
             + f"\nbest {best['run']}: validation {best['val_accuracy'] * 100:.2f} %")
    if len(swept) == 2:
        fig = _sweep_heatmap(mpl, runs, swept)
    else:
        fig = _sweep_lines(mpl, finished, swept)
    fig.suptitle(title, fontsize=10)
    return _render(fig, fmt)


def _sweep_heatmap(mpl, runs: list[dict], swept: dict[str, list]):
    """Rows: the first swept setting's values; columns: the second's; a cell per run, its accuracy written in."""
    (rows_setting, row_values), (columns_setting, column_values) = swept.items()
    accuracy = np.full((len(row_values), len(column_values)), np.nan)       # (R, C) percent; NaN: no result
    failed = np.zeros(accuracy.shape, bool)
    for record in runs:
        settings = record["settings"]
        i, j = row_values.index(settings[rows_setting]), column_values.index(settings[columns_setting])
        if record.get("status") == "ok" and record.get("val_accuracy") is not None:
            accuracy[i, j] = record["val_accuracy"] * 100
        elif record.get("status") == "failed":
            failed[i, j] = True
    fig = mpl.new_figure(*SWEEP_HEATMAP_INCHES)
    ax = fig.subplots()
    shown = np.ma.masked_invalid(accuracy)
    image = ax.imshow(shown, cmap=mpl.colormaps["viridis"].with_extremes(bad="#dddddd"), aspect="auto")
    low, high = float(np.nanmin(accuracy)), float(np.nanmax(accuracy))
    for (i, j), value in np.ndenumerate(accuracy):
        text = "failed" if failed[i, j] else "" if np.isnan(value) else f"{value:.2f}"
        bright = not np.isnan(value) and value > low + 0.6 * (high - low)
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if bright or np.isnan(value) else "white",
                fontweight="bold" if value == high else "normal")
    ax.set_xticks(range(len(column_values)), [_shown(v) for v in column_values])
    ax.set_yticks(range(len(row_values)), [_shown(v) for v in row_values])
    ax.set_xlabel(_label(columns_setting))
    ax.set_ylabel(_label(rows_setting))
    fig.colorbar(image, ax=ax, shrink=0.8, label="validation accuracy (%)")
    return fig


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _sweep_lines(mpl, finished: list[dict], swept: dict[str, list]):
    """One panel per swept setting: mean validation accuracy against its values, a line per value of another."""
    settings = list(swept)
    columns = min(len(settings), MAX_SWEEP_PANELS_PER_ROW)
    panel_rows = math.ceil(len(settings) / columns)
    fig = mpl.new_figure(SWEEP_PANEL_INCHES[0] * columns, SWEEP_PANEL_INCHES[1] * panel_rows + 0.6)
    axes = np.atleast_1d(fig.subplots(panel_rows, columns, squeeze=False)).ravel()
    for ax, setting in zip(axes, settings):
        values = swept[setting]
        others = [s for s in settings if s not in (setting, "seed")]
        group = others[0] if others else None
        numeric = _numeric(values)
        positions = values if numeric else list(range(len(values)))
        for line_value in (swept[group] if group else [None]):
            xs, ys = [], []
            for value, x in zip(values, positions):
                picked = [r["val_accuracy"] * 100 for r in finished if r["settings"][setting] == value
                          and (group is None or r["settings"][group] == line_value)]
                if picked:
                    xs.append(x)
                    ys.append(sum(picked) / len(picked))
            label = f"{_label(group)} {_shown(line_value)}" if group else None
            ax.plot(xs, ys, "o-", label=label)
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(values, [_shown(v) for v in values])
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        else:
            ax.set_xticks(positions, [_shown(v) for v in values])
        averaged = [s for s in settings if s != setting and s != group]
        ax.set_xlabel(_label(setting))
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"mean over {', '.join(map(_label, averaged))}" if averaged else "", fontsize=8)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    for ax in axes[len(settings):]:
        ax.set_axis_off()
    return fig


# --- the kinds of picture, as a table -------------------------------------------------------------

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
    "sweep": lambda r: sweep_figure(r.runs, r.swept, r.name, r.fmt),
}
assert DRAW.keys() == PLOT_KINDS.keys(), "viz.PLOT_KINDS must describe exactly the kinds drawn here"
