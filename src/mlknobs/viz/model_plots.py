"""Pictures of a trained model: its hidden units' weights, its learning curves, its confusions, its mistakes.

Each `*_figure` function returns the picture as bytes (PNG, SVG or PDF) and never touches the disk.
"""

from __future__ import annotations

import math

import numpy as np

from mlknobs.data.splits import Split
from mlknobs.errors import PlotError
from mlknobs.nn.evaluate import confusion_matrix
from mlknobs.nn.model import Model
from mlknobs.text import one_line
from mlknobs.viz.figures import (
    DIGIT_TILE_INCHES,
    TITLE_NAME_CHARS,
    grid_title,
    matplotlib_parts,
    mosaic_axes,
    render,
    tile_mosaic,
)

# Tile grids (weights, mistakes) are one image of 28x28 tiles with blank space around each for
# its caption, drawn on a single Axes: a separate Axes per tile makes matplotlib's layout take
# seconds for a hundred tiles. Sizes are in tile pixels (one pixel = one 28x28 image pixel).
WEIGHT_TILE_INCHES = 1.0              # width of one weight tile's cell
WEIGHT_CELL = (28 + 4, 28 + 9)        # (width, height) in tile pixels: a gap, and a one-line caption above
MISTAKE_COLUMNS = 8
MISTAKE_CELL = (28 + 8, 28 + 14)      # room for a three-line caption
HISTORY_INCHES = (11.0, 4.5)
CONFUSION_INCHES = (8.5, 7.5)


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
    mpl = matplotlib_parts()
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
    fig, ax = mosaic_axes(mpl.new_figure, mosaic, WEIGHT_TILE_INCHES / WEIGHT_CELL[0], colourbar_inches)
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
    grid_title(fig, f"What each hidden unit looks for: input weights of {which}\n"
                     f"{name}: {_describe(model)}; {scale}\n"
                     f"red: a bright pixel there turns the unit on, blue: turns it off, white: no effect")
    return render(fig, fmt)


# --- history --------------------------------------------------------------------------------------

def history_figure(model: Model, name: str, fmt: str = "png") -> bytes:
    """Loss and accuracy per epoch for the training and validation sets, and the final test result."""
    if not model.history:
        raise PlotError(f"{name} has no training history to plot (no finished epoch was recorded)")
    mpl = matplotlib_parts()
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
    return render(fig, fmt)


# --- confusion ------------------------------------------------------------------------------------

def confusion_figure(model: Model, name: str, test: Split, fmt: str = "png") -> bytes:
    """The confusion matrix on `test` (rows: true class, columns: predicted) with every count written in.

    The diagonal (right answers, ~1000 each) and the mistakes (a handful each) differ a hundredfold,
    so they get separate colour scales: greens for the diagonal, reds for the mistakes, each scaled
    to its own largest count. On one shared scale every mistake would look equally white.
    """
    mpl = matplotlib_parts()
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
    fig.suptitle(f"Confusion matrix of {one_line(name, TITLE_NAME_CHARS, keep_end=True)} on the {model.dataset} test set\n"
                 f"{correct:,} of {total:,} right ({100 * correct / max(total, 1):.2f} %); "
                 f"green: right answers, red: mistakes", fontsize=10)
    return render(fig, fmt)


# --- mistakes -------------------------------------------------------------------------------------

def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the misclassified rows, the most confident (highest predicted probability) first."""
    predictions = probabilities.argmax(axis=1)                             # (N,)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")]


def mistakes_figure(model: Model, name: str, test: Split, count: int = 40, fmt: str = "png") -> bytes:
    """The test images the model gets wrong, most confident first, captioned with true and predicted class."""
    mpl = matplotlib_parts()
    probabilities = model.predict_proba(test.images)                       # (N, 10)
    order = most_confident_mistakes(probabilities, test.labels)
    if len(order) == 0:
        raise PlotError(f"{name} classifies every {model.dataset} test image correctly; no mistakes to show")
    shown = order[:count]
    class_names = model.class_names
    tiles = test.images[shown].reshape(len(shown), 28, 28).astype(np.float32)
    mosaic, anchors = tile_mosaic(tiles, MISTAKE_COLUMNS, MISTAKE_CELL)
    fig, ax = mosaic_axes(mpl.new_figure, mosaic, DIGIT_TILE_INCHES / 28)
    # Dark ink on white: MNIST digits as written, Fashion-MNIST items as in the shop photos they came from.
    ax.imshow(mosaic, cmap=mpl.colormaps["gray_r"].with_extremes(bad="white"), vmin=0, vmax=255,
              interpolation="nearest")
    for i, (x, y) in zip(shown, anchors):
        predicted = int(probabilities[i].argmax())
        ax.text(x, y - 1, f"true {class_names[test.labels[i]]}\npred {class_names[predicted]}\n"
                          f"{100 * probabilities[i, predicted]:.1f} % sure", ha="center", va="bottom", fontsize=8)
    grid_title(fig, f"Mistakes of {name} ({_describe(model)}): {len(order):,} of {len(test):,} test images "
                     f"are misclassified;\nhere are the {len(shown)} the model is surest about, surest first "
                     f"(true class, predicted class and its probability)")
    return render(fig, fmt)
